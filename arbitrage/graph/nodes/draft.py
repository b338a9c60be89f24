"""draft_step: the draft model proposes the next step from the accepted prefix."""

from __future__ import annotations

from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState, candidate_from
from arbitrage.graph.nodes.generation import accepted_texts, step_token_budget
from arbitrage.graph.nodes.timing import timed


def draft_step(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    context = runtime.context
    timings: dict[str, float] = {}
    with timed(timings, "draft"):
        output = context.models.draft.step(
            state["problem"],
            accepted_texts(state),
            max_tokens=step_token_budget(state, context.limits),
            sampling=context.draft_sampling,
            session=state["problem_id"],
        )
    return {
        "draft": candidate_from(output),
        "counters": {"draft_steps": 1, "draft_tokens": output.num_tokens},
        "timings": timings,
    }
