"""router_decision: the router scores the pending draft step (y_hat in [0, 1])."""

from __future__ import annotations

from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState, output_from
from arbitrage.graph.nodes.timing import timed
from arbitrage.protocols import AnnotatedStep, RouterQuery


def router_decision(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    query = RouterQuery(
        problem=state["problem"],
        previous_steps=[AnnotatedStep(step["text"], step["source"]) for step in state.get("steps", [])],
        draft=output_from(state["draft"]),
    )
    timings: dict[str, float] = {}
    with timed(timings, "router"):
        score = float(runtime.context.models.router.score(query))
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"router returned {score}, outside [0, 1]")
    runtime.context.router_watch.observe(score)
    return {"router_score": score, "counters": {"router_calls": 1}, "timings": timings}
