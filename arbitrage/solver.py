"""Solve one problem with the graph and turn the final state into a result record.

`Solver` loads nothing itself: it takes a loaded `ModelSet`, so a sweep loads each
model once and reuses it across policies and thresholds, and a grader (batch runs pass
arbitrage/eval/grading.py's), so a record says whether the answer is right.
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
    def __init__(self, config: Config, models: ModelSet, *, grader: Grader | None = None):
        """Without a grader, records of problems with a gold answer have `correct: None`."""
        missing = [role for role in config.required_models() if getattr(models, role) is None]
        if missing:
            raise ValueError(f"policy '{config.policy.name}' needs a loaded {missing[0]} model")
        self.config = config
        self.models = models
        self.context = SolveContext.from_config(config, models)
        self.graph = build_graph(config.policy, audit_escalations=config.audit_escalations)
        self.grader = grader
        self.prompt_limit = prompt_limit(config, (models.draft, models.target))

    def initial_state(self, problem_id: str, problem: str) -> dict:
        return initial_state(problem_id, problem)

    def run_config(self) -> dict:
        return {"recursion_limit": recursion_limit(self.config.limits)}

    def solve(
        self, problem_id: str, problem: str, gold_answer: str | list[str] | None = None, dataset: str | None = None
    ) -> dict:
        """Run the graph on one problem; errors are captured in the record, not raised.

        `dataset` selects dataset-specific grading (e.g. exact numbers for gsm8k)."""
        start = time.perf_counter()
        record = {
            "id": problem_id,
            "problem": problem,
            "gold_answer": gold_answer,
            "policy": self.config.policy.name,
            "threshold": self.config.threshold,
        }
        try:
            self.prompt_limit.check(problem)  # a problem too long for the models is this record's error
            final = self.graph.invoke(self.initial_state(problem_id, problem), self.run_config(), context=self.context)
            answer = final.get("final_answer")
            correct = None
            if gold_answer is not None and self.grader is not None:
                correct = answer is not None and bool(self.grader(answer, gold_answer, dataset))
        except Exception as error:  # one failing problem must not end the run
            record.update(error=f"{type(error).__name__}: {error}", latency_s=time.perf_counter() - start)
            return record
        finally:
            self._end_sessions(problem_id)
        latency = time.perf_counter() - start
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
        if final.get("training_rows"):
            record["training_rows"] = final["training_rows"]
        return record

    def _end_sessions(self, problem_id: str) -> None:
        for generator in (self.models.draft, self.models.target):
            if generator is not None:
                generator.end_session(problem_id)
