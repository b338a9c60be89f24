"""target_step: the target model writes the step from the same accepted prefix.

Reached only when the policy escalates (or, for oracle and generate, by definition).
Under `generate` with target_samples K > 1 it also draws K - 1 sampled steps whose
PRM scores join the router label's mean s_t.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState, candidate_from
from arbitrage.graph.nodes.generation import accepted_texts, step_token_budget
from arbitrage.graph.nodes.timing import timed


def target_step(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    context = runtime.context
    extra = context.extra_target_samples if context.policy.writes_training_rows else 0
    timings: dict[str, float] = {}
    outputs = []
    with timed(timings, "target"):
        for index in range(1 + extra):
            outputs.append(
                context.models.target.step(
                    state["problem"],
                    accepted_texts(state),
                    max_tokens=step_token_budget(state, context.limits),
                    sampling=context.target_sampling if index == 0 else context.extra_target_sampling,
                    session=state["problem_id"],
                )
            )
    update = {
        "target": candidate_from(outputs[0]),
        "counters": {"target_calls": len(outputs), "target_tokens": sum(o.num_tokens for o in outputs)},
        "timings": timings,
    }
    if extra:
        update["extra_targets"] = [candidate_from(o) for o in outputs[1:]]
    return update
