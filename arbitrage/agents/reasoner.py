"""One set of loaded models that many concurrent problems share, for the ways agents call
Arbitrage as a model: the OpenAI-compatible pipeline server and the LangChain chat model.

Each role loads once, on first use by a request's policy, and goes through a batcher
(servers/inprocess_batching.py): problems in flight at the same time share one forward
per decode step. A request may name another policy or threshold than the config's; the
graph for each (policy, threshold) is built once.

    reasoner = Reasoner(load_config("examples/lab.yaml"))
    for event in reasoner.stream("Tia has 13 beads. ..."):
        ...  # a CommittedStep per step as it is committed, then the Solution
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator

from arbitrage.config import Config, ConfigError
from arbitrage.servers.factory import ModelSet, load_models
from arbitrage.servers.inprocess_batching import close_batching, wrap_batching
from arbitrage.servers.token_prompts import prefix_ids
from arbitrage.solver import Solver


class SettingError(ValueError):
    """A request's policy or threshold cannot be used; `param` names the field."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass
class StepEvent:
    """A step the moment it is committed: `step` is the graph's CommittedStep."""

    index: int
    step: dict


@dataclass
class Solution:
    problem_id: str
    problem: str
    policy: str
    threshold: float | None
    separator: str
    steps: list[dict]
    final_answer: str | None
    finish_reason: str | None
    counters: dict[str, int]
    prompt_tokens: int = 0
    metadata: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.separator.join(step["text"] for step in self.steps)

    def usage(self) -> dict[str, int]:
        """OpenAI's usage fields (completion = the committed solution's tokens) and where they came from."""
        counters = self.counters
        completion = counters.get("committed_tokens", 0)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "draft_tokens": counters.get("draft_tokens", 0),
            "target_tokens": counters.get("target_tokens", 0),
            "target_calls": counters.get("target_calls", 0),
            "escalated_steps": counters.get("escalated_steps", 0),
            "steps": counters.get("steps", 0),
        }

    def summary(self) -> dict:
        """What a reply carries beside the text: the final answer, the run's settings, the counters."""
        return {
            "final_answer": self.final_answer,
            "finish_reason": self.finish_reason,
            "policy": self.policy,
            "threshold": self.threshold,
            "counters": dict(self.counters),
        }


class Reasoner:
    """Thread-safe: every method may be called from many threads (or tasks) at once."""

    def __init__(self, config: Config, *, models: ModelSet | None = None, max_batch: int = 32):
        """`models`, when given, are used for the roles they hold (and never closed here);
        the others load from `config` when a request first needs them."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.config = config
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._given = models if models is not None else ModelSet()
        self._batched = wrap_batching(self._given, max_batch=max_batch)
        self._solvers: dict[tuple[str, float | None], Solver] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_batch, thread_name_prefix="arbitrage-reasoner")

    def settings(self, policy: str | None = None, threshold: float | None = None, *, source: str = "request") -> Config:
        """The config with a request's policy and threshold; SettingError names the bad field."""
        try:
            with_policy = self.config.with_overrides(policy=policy, source=source)
            with_policy.required_models()
        except ConfigError as error:
            raise SettingError("policy", str(error)) from None
        if threshold is not None and not with_policy.policy.uses_threshold:
            raise SettingError("threshold", f"{source}: threshold: policy {with_policy.policy.name} takes no threshold")
        try:
            return with_policy.with_overrides(threshold=threshold, source=source)
        except ConfigError as error:
            raise SettingError("threshold", str(error)) from None

    def solver(self, config: Config) -> Solver:
        key = (config.policy.name, config.threshold)
        with self._lock:
            if key not in self._solvers:
                self._load_roles(config)
                self._solvers[key] = Solver(config, self._batched)
            return self._solvers[key]

    def _load_roles(self, config: Config) -> None:
        for role in config.required_models():
            if getattr(self._batched, role) is None:
                loaded = getattr(load_models(self.config, roles=(role,)), role)
                wrapped = getattr(wrap_batching(ModelSet(**{role: loaded}), max_batch=self.max_batch), role)
                setattr(self._batched, role, wrapped)

    def stream(
        self, problem: str, *, policy: str | None = None, threshold: float | None = None, problem_id: str | None = None
    ) -> Iterator[StepEvent | Solution]:
        """Solve one problem in the calling thread: a StepEvent per committed step, then the Solution.
        Closing the iterator early stops the problem after the node running at that moment."""
        config = self.settings(policy, threshold)
        solver = self.solver(config)
        problem_id = problem_id or f"chat-{uuid.uuid4().hex[:12]}"
        state = solver.initial_state(problem_id, problem)
        final: dict = {}
        try:
            for mode, event in solver.graph.stream(
                state, solver.run_config(), context=solver.context, stream_mode=["custom", "values"]
            ):
                if mode == "custom":
                    yield StepEvent(index=event["index"], step=event["step"])
                else:
                    final = event
        finally:
            solver.end_sessions(problem_id)
        yield Solution(
            problem_id=problem_id,
            problem=problem,
            policy=config.policy.name,
            threshold=config.threshold,
            separator=config.separator,
            steps=list(final.get("steps", [])),
            final_answer=final.get("final_answer"),
            finish_reason=final.get("finish_reason"),
            counters=dict(final.get("counters", {})),
            prompt_tokens=self.prompt_tokens(config, problem),
        )

    def solve(self, problem: str, **options) -> Solution:
        for event in self.stream(problem, **options):
            if isinstance(event, Solution):
                return event
        raise RuntimeError("the graph ended without a solution")  # stream always ends on one

    async def astream(self, problem: str, **options) -> AsyncIterator[StepEvent | Solution]:
        """`stream` on the reasoner's own threads (as many as max_batch), so concurrent tasks
        batch together whatever the event loop's default executor allows."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        done = object()

        def produce() -> None:
            iterator = self.stream(problem, **options)
            try:
                for event in iterator:
                    loop.call_soon_threadsafe(queue.put_nowait, event)
                    if stop.is_set():
                        break
            except BaseException as error:  # handed to the awaiting task
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                iterator.close()
                loop.call_soon_threadsafe(queue.put_nowait, done)

        future = loop.run_in_executor(self._pool, produce)
        try:
            while (item := await queue.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            await asyncio.shield(future)

    async def asolve(self, problem: str, **options) -> Solution:
        async for event in self.astream(problem, **options):
            if isinstance(event, Solution):
                return event
        raise RuntimeError("the graph ended without a solution")

    def prompt_tokens(self, config: Config, problem: str) -> int:
        """The problem's prompt in tokens of the model that writes the first step, when that
        model runs in-process; 0 when it is behind HTTP (its server tokenizes, not us)."""
        role = "draft" if config.policy.drafts else "target"
        generator = getattr(self._batched, role)
        tokenizer = getattr(getattr(generator, "inner", generator), "tokenizer", None)
        model_cfg = config.models.get(role)
        if tokenizer is None or model_cfg is None:
            return 0
        return len(prefix_ids(tokenizer, model_cfg.prompt, problem, [], config.separator))

    def batch_sizes(self, role: str) -> list[int]:
        """How many requests each call of the role's model ran together (empty when the model
        is not loaded yet or cannot batch)."""
        batcher = getattr(getattr(self._batched, role), "batcher", None)
        return list(batcher.batch_sizes) if batcher is not None else []

    def close(self) -> None:
        """Stop the batchers this reasoner started (models passed in stay usable) and its threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        close_batching(self._batched)
