"""Scripted model doubles for routing logic: they implement the protocols and count calls."""

from __future__ import annotations

from typing import Sequence

from arbitrage.protocols import RouterQuery, SamplingParams, StepOutput


class ScriptedGenerator:
    """Writes `steps[i]` as step i (with " (sampled)" appended when sampling at
    temperature > 0); the last one ends the solution (EOS)."""

    def __init__(self, name: str, steps: Sequence[str], tokens_per_step: int = 5):
        self.name = name
        self.steps = list(steps)
        self.tokens_per_step = tokens_per_step
        self.calls: list[list[str]] = []
        self.ended: list[str] = []

    def step(self, problem, steps, *, max_tokens, sampling: SamplingParams | None = None, session=None) -> StepOutput:
        self.calls.append(list(steps))
        index = min(len(steps), len(self.steps) - 1)
        last = index == len(self.steps) - 1
        sampled = sampling is not None and not sampling.greedy
        return StepOutput(
            text=self.steps[index] + (" (sampled)" if sampled else ""),
            num_tokens=min(self.tokens_per_step, max_tokens),
            finish_reason="eos" if last else "separator",
            token_logprobs=[-0.5] * min(self.tokens_per_step, max_tokens),
        )

    def end_session(self, session: str) -> None:
        self.ended.append(session)


class ScriptedPRM:
    """Reward of a step = `rewards[text]` (default 0.5)."""

    def __init__(self, rewards: dict[str, float]):
        self.rewards = rewards
        self.calls = 0

    def score(self, problem, steps) -> list[float]:
        self.calls += 1
        return [self.rewards.get(step, 0.5) for step in steps]


class ScriptedRouter:
    """Router score of a draft step = `scores[text]` (default 0.5)."""

    def __init__(self, scores: dict[str, float]):
        self.scores = scores
        self.queries: list[RouterQuery] = []

    def score(self, query: RouterQuery) -> float:
        self.queries.append(query)
        return self.scores.get(query.draft.text, 0.5)
