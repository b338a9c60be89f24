"""router_decision: the router scores the pending draft step (y_hat in [0, 1]).

A router that runs the target over the draft step (target_prefill) reports it, counted
as `router_prefill_calls`; the problem id is its session, so it reuses the target's cache."""

from __future__ import annotations

from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState, output_from
from arbitrage.graph.nodes.timing import timed
from arbitrage.protocols import AnnotatedStep, RouterQuery, router_score


def router_decision(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    query = RouterQuery(
        problem=state["problem"],
        previous_steps=[AnnotatedStep(step["text"], step["source"]) for step in state.get("steps", [])],
        draft=output_from(state["draft"]),
        session=state["problem_id"],
    )
    timings: dict[str, float] = {}
    with timed(timings, "router"):
        result = router_score(runtime.context.models.router, query)
    score = float(result.score)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"router returned {score}, outside [0, 1]")
    runtime.context.router_watch.observe(score)
    counters = {"router_calls": 1, "router_prefill_calls": result.prefill_calls}
    return {"router_score": score, "counters": counters, "timings": timings}
