"""The three model interfaces the graph's nodes call, and the values they exchange.

Backends (in-process transformers, OpenAI-compatible HTTP) implement these; nodes
only call them. Every method is synchronous and thread-safe: concurrent runs share
one loaded model.

A backend may also offer the optional methods declared at the end (`step_batch`,
`score_batch`, `score_last`); callers test for them with `isinstance` and fall back to
the plain protocol method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

StepSource = Literal["draft", "target"]
FinishReason = Literal["separator", "eos", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings for one step; converts itself to each wire format."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    # Engine-specific request fields (repeat_penalty, top_k, ...), sent verbatim over HTTP.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def to_openai_kwargs(self) -> dict:
        kwargs: dict = {**self.extra, "temperature": self.temperature, "top_p": self.top_p}
        if self.seed is not None:
            kwargs["seed"] = self.seed
        return kwargs

    @classmethod
    def from_request(cls, body: Mapping[str, Any], default: "SamplingParams | None" = None) -> "SamplingParams":
        """Read the fields `to_openai_kwargs` writes from an OpenAI request body; an absent
        or null field takes `default`'s value. Raises ValueError naming a bad field."""
        default = default if default is not None else cls()
        temperature = _request_number(body, "temperature", default.temperature)
        top_p = _request_number(body, "top_p", default.top_p)
        seed = body.get("seed")
        if seed is None:
            seed = default.seed
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"request field 'seed' should be an integer, got {type(seed).__name__}")
        if temperature < 0:
            raise ValueError(f"request field 'temperature' must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"request field 'top_p' must be in (0, 1], got {top_p}")
        return cls(temperature=temperature, top_p=top_p, seed=seed)


def _request_number(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"request field '{name}' should be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"request field '{name}' must be a finite number, got {value}")
    return float(value)


@dataclass
class StepOutput:
    """One generated reasoning step.

    `text` excludes the trailing separator. `finish_reason` is "separator" when the
    step ended on the separator (more steps may follow), "eos" when the model ended
    the solution, "length" when the per-step token cap cut it.
    """

    text: str
    num_tokens: int
    finish_reason: FinishReason
    token_logprobs: list[float] = field(default_factory=list)

    @property
    def logprob_mean(self) -> float | None:
        return sum(self.token_logprobs) / len(self.token_logprobs) if self.token_logprobs else None

    @property
    def logprob_min(self) -> float | None:
        return min(self.token_logprobs) if self.token_logprobs else None


@dataclass(frozen=True)
class AnnotatedStep:
    """An accepted step and the model that wrote it (the router's annotation)."""

    text: str
    source: StepSource


@dataclass(frozen=True)
class RouterQuery:
    """Everything a router may look at when deciding on the pending draft step.

    `session` names the problem being solved (as in `Generator.step`), so a router that
    runs the target over the step can reuse that problem's KV cache."""

    problem: str
    previous_steps: Sequence[AnnotatedStep]
    draft: StepOutput
    session: str | None = None


@dataclass(frozen=True)
class RouterScore:
    """A router's score and what it cost: `prefill_calls` target forwards over the draft step."""

    score: float
    prefill_calls: int = 0


@runtime_checkable
class Generator(Protocol):
    """A causal LM that writes one step at a time."""

    def step(
        self,
        problem: str,
        steps: Sequence[str],
        *,
        max_tokens: int,
        sampling: SamplingParams | None = None,
        session: str | None = None,
    ) -> StepOutput:
        """Continue `prompt(problem) + steps` until the separator, EOS or `max_tokens`.

        `session` names the problem being solved so a backend may keep that
        problem's KV cache between calls; `end_session` releases it.
        """
        ...

    def end_session(self, session: str) -> None: ...


@runtime_checkable
class PRM(Protocol):
    """A process reward model: one reward in [0, 1] per step."""

    def score(self, problem: str, steps: Sequence[str]) -> list[float]: ...


def last_step_reward(prm: PRM, problem: str, steps: Sequence[str]) -> float:
    """The newest step's reward, through `score_last` when the PRM offers it."""
    if isinstance(prm, LastStepPRM):
        return float(prm.score_last(problem, steps))
    rewards = prm.score(problem, steps)
    if len(rewards) != len(steps):
        raise ValueError(f"PRM returned {len(rewards)} rewards for {len(steps)} steps")
    return float(rewards[-1])


@runtime_checkable
class Router(Protocol):
    """Probability that the target would write a better step than the draft did.

    The threshold is applied outside, so a router is comparable across thresholds.
    """

    def score(self, query: RouterQuery) -> float: ...


def router_score(router: Router, query: RouterQuery) -> RouterScore:
    """The router's score, with its cost where the router reports one (`CostedRouter`)."""
    if isinstance(router, CostedRouter):
        return router.score_detailed(query)
    return RouterScore(float(router.score(query)))


# ---- optional methods: a backend offers them beside its protocol method ----


@dataclass(frozen=True)
class StepRequest:
    """The arguments of one `Generator.step` call, as one value (for `step_batch`)."""

    problem: str
    steps: tuple[str, ...]
    max_tokens: int
    sampling: SamplingParams | None = None
    session: str | None = None


@runtime_checkable
class BatchedGenerator(Protocol):
    """Optional for a Generator: `step` for every request, decoded together; outputs in
    request order. `arbitrage serve` and `run --concurrency` batch concurrent calls
    through it (servers/batching.py); without it they call `step` one at a time."""

    def step_batch(self, requests: Sequence[StepRequest]) -> list[StepOutput]: ...


@runtime_checkable
class ContinuationScorer(Protocol):
    """Optional for a Generator: its own likelihood of a given step.

    `score_continuation(problem, steps, text)` returns the log-probability of each token
    of `text` given `prompt(problem) + steps` (each step followed by the separator), then
    one last entry: log P(separator | prefix + text), summed over the separator's tokens,
    the model's probability of ending the step right there. So the list is one longer
    than `text`'s tokens. `text` and the separator are tokenized on their own, as the
    model would have written them after the prefix. It costs one forward over the new
    tokens (a prefill), no decoding; with a `session`, a backend keeps the problem's KV
    cache, so a later `step` on the same prefix does not encode the prefix again.
    """

    def score_continuation(
        self, problem: str, steps: Sequence[str], text: str, *, session: str | None = None
    ) -> list[float]: ...


@dataclass(frozen=True)
class ContinuationRequest:
    """The arguments of one `score_continuation` call, as one value (for the batched form)."""

    problem: str
    steps: tuple[str, ...]
    text: str
    session: str | None = None


@runtime_checkable
class BatchedContinuationScorer(Protocol):
    """Optional beside `score_continuation`: every request in shared forwards; outputs in
    request order. The generator's batcher (servers/batching.py) queues these with its steps."""

    def score_continuation_batch(self, requests: Sequence[ContinuationRequest]) -> list[list[float]]: ...


@runtime_checkable
class BatchedPRM(Protocol):
    """Optional for a PRM: `score` for every (problem, steps) item in one call."""

    def score_batch(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]: ...


@runtime_checkable
class LastStepPRM(Protocol):
    """Optional for a PRM whose cost grows with the number of steps scored (a judge LM
    asks once per step): the reward of the last step only. The graph only ever needs
    that one, and `last_step_reward` uses it when present."""

    def score_last(self, problem: str, steps: Sequence[str]) -> float: ...


@runtime_checkable
class BatchedRouter(Protocol):
    """Optional for a Router: `score` for every query in one call."""

    def score_batch(self, queries: Sequence[RouterQuery]) -> list[float]: ...


@runtime_checkable
class CostedRouter(Protocol):
    """Optional for a Router that may call a model to decide (the target-prefill router):
    its score and whether it paid for that call; the graph counts those calls."""

    def score_detailed(self, query: RouterQuery) -> RouterScore: ...
