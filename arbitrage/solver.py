"""Solve one problem with the graph and turn the final state into a result record.

`Solver` loads nothing itself: it takes a loaded `ModelSet`, so a sweep loads each
model once and reuses it across policies and thresholds, and a grader (batch runs pass
arbitrage/eval/grading.py's), so a record says whether the answer is right.

With a checkpointer, each problem runs under a thread id and its state is saved after
every graph step before the next one starts (durability "sync"), so a problem cut short
by a crash or a kill resumes at its last committed step: no committed step is generated
again.
"""

from __future__ import annotations

import time
from typing import Callable

from arbitrage.config import Config
from arbitrage.graph.builder import build_graph, recursion_limit
from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import initial_state
from arbitrage.servers.factory import ModelSet
from arbitrage.servers.prompt_limit import prompt_limit

# (predicted answer or None, gold answer or a list of acceptable ones, dataset name or None) -> correct?
Grader = Callable[[str | None, str | list[str], str | None], bool]


class Solver:
    def __init__(self, config: Config, models: ModelSet, *, grader: Grader | None = None, checkpointer=None):
        """Without a grader, records of problems with a gold answer have `correct: None`.
        `checkpointer` (a LangGraph checkpoint saver) makes `solve(..., thread_id=...)` durable."""
        missing = [role for role in config.required_models() if getattr(models, role) is None]
        if missing:
            raise ValueError(f"policy '{config.policy.name}' needs a loaded {missing[0]} model")
        self.config = config
        self.models = models
        self.context = SolveContext.from_config(config, models)
        self.checkpointer = checkpointer
        self.graph = build_graph(config.policy, audit_escalations=config.audit_escalations, checkpointer=checkpointer)
        self.grader = grader
        self.prompt_limit = prompt_limit(config, (models.draft, models.target))

    def initial_state(self, problem_id: str, problem: str) -> dict:
        return initial_state(problem_id, problem)

    def run_config(self) -> dict:
        return {"recursion_limit": recursion_limit(self.config.limits)}

    def solve(
        self,
        problem_id: str,
        problem: str,
        gold_answer: str | list[str] | None = None,
        dataset: str | None = None,
        *,
        thread_id: str | None = None,
    ) -> dict:
        """Run the graph on one problem; errors are captured in the record, not raised.

        `dataset` selects dataset-specific grading (e.g. exact numbers for gsm8k). With a
        checkpointer, `thread_id` names the problem's saved state: a state saved for the same
        problem is resumed (the record then says `resumed_at_step`), any other is replaced."""
        start = time.perf_counter()
        record = {
            "id": problem_id,
            "problem": problem,
            "gold_answer": gold_answer,
            "policy": self.config.policy.name,
            "threshold": self.config.threshold,
        }
        resumed_at = None
        try:
            self.prompt_limit.check(problem)  # a problem too long for the models is this record's error
            final, resumed_at, earlier_s = self._run_graph(problem_id, problem, thread_id)
            answer = final.get("final_answer")
            correct = None
            if gold_answer is not None and self.grader is not None:
                correct = answer is not None and bool(self.grader(answer, gold_answer, dataset))
        except Exception as error:  # one failing problem must not end the run
            record.update(error=f"{type(error).__name__}: {error}", latency_s=time.perf_counter() - start)
            return record
        finally:
            self.end_sessions(problem_id)
        # A resumed problem's latency counts the node time spent before the interruption.
        latency = time.perf_counter() - start + earlier_s
        timings = dict(final.get("timings", {}))
        timings["graph_overhead"] = max(0.0, latency - sum(timings.values()))
        record.update(
            error=None,
            steps=final["steps"],
            final_answer=answer,
            correct=correct,
            finish_reason=final.get("finish_reason"),
            counters=final.get("counters", {}),
            timings_s=timings,
            latency_s=latency,
        )
        if resumed_at is not None:
            record["resumed_at_step"] = resumed_at
        if final.get("training_rows"):
            record["training_rows"] = final["training_rows"]
        return record

    def _run_graph(self, problem_id: str, problem: str, thread_id: str | None) -> tuple[dict, int | None, float]:
        """The final state, the committed steps a saved state already had (None when the
        problem started afresh), and the node seconds that saved state had spent."""
        if self.checkpointer is None or thread_id is None:
            final = self.graph.invoke(self.initial_state(problem_id, problem), self.run_config(), context=self.context)
            return final, None, 0.0
        run = {**self.run_config(), "configurable": {"thread_id": thread_id}}
        saved = self.graph.get_state(run).values
        if saved and saved.get("problem_id") == problem_id and saved.get("problem") == problem:
            earlier_s = sum(saved.get("timings", {}).values())
            resumed_at = len(saved.get("steps", []))
            if saved.get("finished"):  # solved, but the run ended before its record was written
                return saved, resumed_at, earlier_s
            return self.graph.invoke(None, run, context=self.context, durability="sync"), resumed_at, earlier_s
        if saved:  # another problem text under this id: its steps are not this problem's
            self.checkpointer.delete_thread(thread_id)
        final = self.graph.invoke(self.initial_state(problem_id, problem), run, context=self.context, durability="sync")
        return final, None, 0.0

    def end_sessions(self, problem_id: str) -> None:
        """Let the generators release the problem's KV cache."""
        for generator in (self.models.draft, self.models.target):
            if generator is not None:
                generator.end_session(problem_id)
