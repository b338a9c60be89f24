"""Batching concurrent requests into one model call, for `arbitrage serve`.

A backend opts in by offering a batched method beside its protocol method
(`step_batch`, `score_continuation_batch`, `score_batch`: the optional methods declared in
arbitrage/protocols.py).
Without one, the batcher calls the single-item method for each queued request in turn
(one worker thread, so calls never overlap). Requests are grouped without waiting: while
one batch runs, new ones queue, and the next batch takes all of them, so a lone client
pays no batching delay.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, Generic, Sequence, TypeVar

from arbitrage.protocols import (
    BatchedContinuationScorer,
    BatchedGenerator,
    BatchedPRM,
    BatchedRouter,
    ContinuationRequest,
    LastStepPRM,
    RouterQuery,
    StepOutput,
    StepRequest,
    last_step_reward,
)

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFull(RuntimeError):
    """More requests are waiting than the server accepts; the client should retry later."""


_STOP = object()


class Batcher(Generic[Item, Result]):
    """One worker thread that runs queued items through `run_batch`, many at a time."""

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result]],
        run_one: Callable[[Item], Result],
        *,
        max_batch: int = 32,
        max_queue: int = 1024,
        name: str = "batcher",
    ):
        self._run_batch = run_batch
        self._run_one = run_one
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batch_sizes: list[int] = []  # recent batch sizes, for /v1/arbitrage/stats
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Result:
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Queue every item before waiting, so they can share one batch."""
        futures = []
        for item in items:
            future: Future = Future()
            try:
                self._queue.put_nowait((item, future))
            except queue.Full:
                raise QueueFull(f"{self._queue.maxsize} requests are already waiting") from None
            futures.append(future)
        return [future.result() for future in futures]

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is _STOP:
                    stopping = True
                    break
                batch.append(entry)
            self._run(batch)
            if stopping:
                return

    def _run(self, batch: list) -> None:
        self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
        items = [item for item, _ in batch]
        try:
            results = self._run_batch(items) if len(items) > 1 else [self._run_one(items[0])]
            if len(results) != len(items):
                raise RuntimeError(f"the batched call returned {len(results)} results for {len(items)} requests")
        except Exception as error:
            if len(items) == 1:
                batch[0][1].set_exception(error)
                return
            # Run them one by one so a single bad request fails alone.
            log.warning("batch of %d failed (%s); retrying one by one", len(items), error)
            for item, future in batch:
                try:
                    future.set_result(self._run_one(item))
                except Exception as single_error:
                    future.set_exception(single_error)
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)


def generator_batcher(generator, **options) -> Batcher[StepRequest | ContinuationRequest, StepOutput | list[float]]:
    """Steps and continuation scores of one model share its queue (one worker, so the two
    kinds never contend for the model); a batch runs each kind through its batched method."""

    def run_one(request):
        if isinstance(request, ContinuationRequest):
            return generator.score_continuation(
                request.problem, list(request.steps), request.text, session=request.session
            )
        return generator.step(
            request.problem,
            list(request.steps),
            max_tokens=request.max_tokens,
            sampling=request.sampling,
            session=request.session,
        )

    run_steps = generator.step_batch if isinstance(generator, BatchedGenerator) else _sequential(run_one)
    run_scores = (
        generator.score_continuation_batch if isinstance(generator, BatchedContinuationScorer) else _sequential(run_one)
    )

    def run_batch(requests):
        results: list = [None] * len(requests)
        for run, kind in ((run_scores, ContinuationRequest), (run_steps, StepRequest)):
            indices = [i for i, request in enumerate(requests) if isinstance(request, kind)]
            if indices:
                chosen = [requests[i] for i in indices]
                outputs = run(chosen) if len(chosen) > 1 else [run_one(chosen[0])]
                if len(outputs) != len(chosen):
                    raise RuntimeError(f"the batched call returned {len(outputs)} results for {len(chosen)} requests")
                for i, output in zip(indices, outputs):
                    results[i] = output
        return results

    return Batcher(run_batch, run_one, name="generator-batcher", **options)


def prm_batcher(prm, **options) -> Batcher[tuple[str, tuple[str, ...], bool], list[float]]:
    """Items are (problem, steps, last_only); `last_only` asks for the newest step's reward
    alone (through the PRM's `score_last` when it has one)."""

    def run_one(item):
        problem, steps, last_only = item
        if last_only:
            return [last_step_reward(prm, problem, list(steps))]
        return list(prm.score(problem, list(steps)))

    def run_batch(items):
        if _scores_in_one_batch(prm, wants_last=any(last_only for _, _, last_only in items)):
            rewards = prm.score_batch([(problem, list(steps)) for problem, steps, _ in items])
            return [[r[-1]] if last_only else list(r) for r, (_, _, last_only) in zip(rewards, items)]
        return [run_one(item) for item in items]

    return Batcher(run_batch, run_one, name="prm-batcher", **options)


def last_step_rewards(prm, items: Sequence[tuple[str, Sequence[str]]]) -> list[float]:
    """The newest step's reward for each (problem, steps), in one batched call when that is cheaper."""
    if _scores_in_one_batch(prm, wants_last=True):
        return [float(r[-1]) for r in prm.score_batch([(problem, list(steps)) for problem, steps in items])]
    return [last_step_reward(prm, problem, list(steps)) for problem, steps in items]


def _scores_in_one_batch(prm, *, wants_last: bool) -> bool:
    # A PRM with its own score_last (a judge) is cheaper per item than a batched score.
    return isinstance(prm, BatchedPRM) and not (wants_last and isinstance(prm, LastStepPRM))


def router_batcher(router, **options) -> Batcher[RouterQuery, float]:
    run_batch = router.score_batch if isinstance(router, BatchedRouter) else _sequential(router.score)
    return Batcher(run_batch, router.score, name="router-batcher", **options)


def _sequential(run_one: Callable) -> Callable[[list], list]:
    return lambda items: [run_one(item) for item in items]
