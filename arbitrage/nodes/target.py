"""target_step: the target model writes the step from the same accepted prefix.

Reached only when the policy escalates (or, for oracle and generate, by definition).
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState, candidate_from
from arbitrage.nodes.generation import accepted_texts, step_token_budget
from arbitrage.nodes.timing import timed


def target_step(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    context = runtime.context
    timings: dict[str, float] = {}
    with timed(timings, "target"):
        output = context.models.target.step(
            state["problem"],
            accepted_texts(state),
            max_tokens=step_token_budget(state, context.limits),
            sampling=context.target_sampling,
            session=state["problem_id"],
        )
    return {
        "target": candidate_from(output),
        "counters": {"target_calls": 1, "target_tokens": output.num_tokens},
        "timings": timings,
    }
