"""Batching across the problems of one in-process run.

With `run --concurrency N`, N threads each solve a problem and call the shared models.
Wrapped here, each call becomes a request to the model's `Batcher` (the queue of
`arbitrage.servers.batching`, the same one `arbitrage serve` uses): while one batch
runs, the calls that arrive meanwhile queue up and go through the model's batched
method (`step_batch`, `score_continuation_batch`, `score_batch`) together, one forward per decode step for all
of them. The wrappers implement the plain protocols, so the graph does not know.

Only models that offer a batched method are wrapped; others (HTTP clients, which batch
on their server, or a judge PRM) are used as they are.

    with batching(models) as batched:
        Solver(config, batched) ...
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Iterator, Sequence

from arbitrage.protocols import (
    BatchedGenerator,
    BatchedPRM,
    BatchedRouter,
    ContinuationRequest,
    RouterQuery,
    SamplingParams,
    StepOutput,
    StepRequest,
)
from arbitrage.servers.batching import generator_batcher, prm_batcher, router_batcher
from arbitrage.servers.factory import ModelSet


class BatchingGenerator:
    def __init__(self, generator: BatchedGenerator, **options):
        self.inner = generator
        self.batcher = generator_batcher(generator, **options)

    def step(
        self,
        problem: str,
        steps: Sequence[str],
        *,
        max_tokens: int,
        sampling: SamplingParams | None = None,
        session: str | None = None,
    ) -> StepOutput:
        return self.batcher.submit(StepRequest(problem, tuple(steps), max_tokens, sampling, session))

    def score_continuation(
        self, problem: str, steps: Sequence[str], text: str, *, session: str | None = None
    ) -> list[float]:
        """Queued with the model's steps; concurrent problems' calls share one forward
        (the model's `score_continuation_batch`)."""
        if not hasattr(self.inner, "score_continuation"):
            raise TypeError(f"{type(self.inner).__name__} cannot score a continuation")
        return self.batcher.submit(ContinuationRequest(problem, tuple(steps), text, session))

    def end_session(self, session: str) -> None:
        self.inner.end_session(session)

    def close(self) -> None:
        self.batcher.close()


class BatchingPRM:
    def __init__(self, prm: BatchedPRM, **options):
        self.inner = prm
        self.batcher = prm_batcher(prm, **options)

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        return self.batcher.submit((problem, tuple(steps), False))

    def score_last(self, problem: str, steps: Sequence[str]) -> float:
        """The newest step's reward, as `last_step_reward` gets it from the wrapped PRM
        (the batcher batches these through `score_batch`)."""
        if not steps:
            raise ValueError("score_last needs at least one step")
        return float(self.batcher.submit((problem, tuple(steps), True))[0])

    def close(self) -> None:
        self.batcher.close()


class BatchingRouter:
    def __init__(self, router: BatchedRouter, **options):
        self.inner = router
        self.batcher = router_batcher(router, **options)

    def score(self, query: RouterQuery) -> float:
        return self.batcher.submit(query)

    def close(self) -> None:
        self.batcher.close()


_WRAPPERS = {
    "draft": (BatchedGenerator, BatchingGenerator),
    "target": (BatchedGenerator, BatchingGenerator),
    "prm": (BatchedPRM, BatchingPRM),
    "router": (BatchedRouter, BatchingRouter),
}


def wrap_batching(models: ModelSet, **options) -> ModelSet:
    """A ModelSet whose batch-capable models go through a batcher (one per model object,
    so a model serving two roles is wrapped once). `options` go to each `Batcher`
    (max_batch, max_queue). Close it with `close_batching`."""
    by_id: dict[int, object] = {}
    for role, (capable, wrapper) in _WRAPPERS.items():
        model = getattr(models, role)
        if model is not None and isinstance(model, capable) and id(model) not in by_id:
            by_id[id(model)] = wrapper(model, **options)
    wrapped = replace(models, **{role: by_id.get(id(getattr(models, role)), getattr(models, role)) for role in _WRAPPERS})
    # A router that runs the target (target_prefill) queues its forwards with the target's steps.
    router = wrapped.router
    if hasattr(router, "with_target") and getattr(router, "target", None) is models.target and id(models.target) in by_id:
        wrapped.router = router.with_target(wrapped.target)
    return wrapped


def close_batching(models: ModelSet) -> None:
    """Stop the worker threads of the wrappers in `models` (each once); others are left alone."""
    closed: set[int] = set()
    for field in fields(models):
        model = getattr(models, field.name)
        if isinstance(model, (BatchingGenerator, BatchingPRM, BatchingRouter)) and id(model) not in closed:
            closed.add(id(model))
            model.close()


@contextmanager
def batching(models: ModelSet, **options) -> Iterator[ModelSet]:
    wrapped = wrap_batching(models, **options)
    try:
        yield wrapped
    finally:
        close_batching(wrapped)
