"""The graph's state: small, JSON-serialisable, so a checkpointer can persist a run.

Reducers only where values accumulate: committed steps, counters, timings and
training rows. Everything else is overwritten by the node that changes it.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

from arbitrage.protocols import StepOutput


def add_counts(left: dict, right: dict) -> dict:
    merged = dict(left or {})
    for key, value in (right or {}).items():
        merged[key] = merged.get(key, 0) + value
    return merged


class Candidate(TypedDict):
    """A generated step waiting for a decision."""

    text: str
    tokens: int
    finish_reason: Literal["separator", "eos", "length"]
    token_logprobs: list[float]


class CommittedStep(TypedDict):
    text: str
    source: Literal["draft", "target"]
    tokens: int
    finish_reason: str
    escalated: bool
    draft_text: str | None
    draft_tokens: int
    draft_score: float | None
    target_score: float | None
    router_score: float | None
    draft_logprob_mean: float | None


class SolveState(TypedDict, total=False):
    problem_id: str
    problem: str
    steps: Annotated[list[CommittedStep], operator.add]
    draft: Candidate | None
    target: Candidate | None
    extra_targets: list[Candidate]
    draft_score: float | None
    target_score: float | None
    extra_target_scores: list[float]
    router_score: float | None
    counters: Annotated[dict[str, int], add_counts]
    timings: Annotated[dict[str, float], add_counts]
    training_rows: Annotated[list[dict], operator.add]
    finished: bool
    finish_reason: str | None
    final_answer: str | None


def candidate_from(output: StepOutput) -> Candidate:
    return Candidate(
        text=output.text,
        tokens=output.num_tokens,
        finish_reason=output.finish_reason,
        token_logprobs=list(output.token_logprobs),
    )


def output_from(candidate: Candidate) -> StepOutput:
    return StepOutput(
        text=candidate["text"],
        num_tokens=candidate["tokens"],
        finish_reason=candidate["finish_reason"],
        token_logprobs=list(candidate["token_logprobs"]),
    )


def initial_state(problem_id: str, problem: str) -> SolveState:
    """The state a problem starts from; the policy and threshold travel in the run's context."""
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError(f"problem {problem_id!r}: the problem text must be a non-empty string, got {problem!r}")
    return SolveState(
        problem_id=problem_id,
        problem=problem,
        steps=[],
        draft=None,
        target=None,
        extra_targets=[],
        draft_score=None,
        target_score=None,
        extra_target_scores=[],
        router_score=None,
        counters={},
        timings={},
        training_rows=[],
        finished=False,
        finish_reason=None,
        final_answer=None,
    )
