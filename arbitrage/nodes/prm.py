"""prm_score: the PRM scores whichever pending steps are still unscored.

Scores the policy decides on are counted as `prm_calls` and timed as `prm`; scores
taken only to audit an escalation (wasted-escalation metric) are counted and timed
apart, so they never inflate a policy's cost.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState
from arbitrage.nodes.generation import accepted_texts
from arbitrage.nodes.timing import timed
from arbitrage.protocols import last_step_reward


def _decides_on(policy: str, which: str) -> bool:
    """Does the policy's decision use this score (rather than only the audit)?"""
    return policy in ("oracle", "generate") or (policy == "rsd" and which == "draft")


def prm_score(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    prm = runtime.context.models.prm
    prefix = accepted_texts(state)
    update: dict = {"counters": {}, "timings": {}}
    for which in ("draft", "target"):
        candidate = state.get(which)
        if candidate is None or state.get(f"{which}_score") is not None:
            continue
        audit = not _decides_on(state["policy"], which)
        with timed(update["timings"], "prm_audit" if audit else "prm"):
            reward = last_step_reward(prm, state["problem"], prefix + [candidate["text"]])
        counter = "audit_prm_calls" if audit else "prm_calls"
        update["counters"][counter] = update["counters"].get(counter, 0) + 1
        update[f"{which}_score"] = reward
    extra = state.get("extra_targets") or []
    if extra and not state.get("extra_target_scores"):
        with timed(update["timings"], "prm"):
            scores = [last_step_reward(prm, state["problem"], prefix + [c["text"]]) for c in extra]
        update["counters"]["prm_calls"] = update["counters"].get("prm_calls", 0) + len(extra)
        update["extra_target_scores"] = scores
    return update
