"""Where every threshold comparison lives: pure functions of the state.

The decision rules (DESIGN, step 2):
- arbitrage: escalate iff router score y_hat > tau
- rsd:       accept the draft iff its PRM score s_d >= tau
- oracle:    escalate iff s_t - s_d > tau, and the target wrote a different step
- generate:  keep whichever step the PRM scores higher (the draft on a tie)

The oracle prices what an ideal router would escalate. Where the target writes the
draft's own text, taking "its" step changes nothing, so an ideal router would not call
the target there: that step is the draft's, not an escalation. (Same text has the same
reward, so at tau < 0 the bare rule would count every such tie as an escalation.)

The edge functions turn them into the next node's name; `chosen_source` tells the
commit node which pending step to keep.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END

from arbitrage.graph.state import SolveState


def router_escalates(router_score: float, tau: float) -> bool:
    return router_score > tau


def rsd_accepts(draft_score: float, tau: float) -> bool:
    return draft_score >= tau


def oracle_escalates(draft_score: float, target_score: float, tau: float) -> bool:
    return target_score - draft_score > tau


def after_router(state: SolveState) -> Literal["target_step", "commit"]:
    return "target_step" if router_escalates(state["router_score"], state["threshold"]) else "commit"


def after_prm(state: SolveState) -> Literal["target_step", "commit"]:
    """RSD's decision on the draft step; once a target step exists it only remains to commit."""
    if state.get("target") is None and not rsd_accepts(state["draft_score"], state["threshold"]):
        return "target_step"
    return "commit"


def after_commit(state: SolveState) -> Literal["draft_step", "target_step", "__end__"]:
    if state.get("finished"):
        return END
    return "target_step" if state["policy"] == "target_only" else "draft_step"


def chosen_source(state: SolveState) -> Literal["draft", "target"]:
    """Which pending step the commit node keeps."""
    if state.get("target") is None:
        return "draft"
    if state.get("draft") is None:
        return "target"
    policy = state["policy"]
    if policy == "oracle":
        if state["target"]["text"] == state["draft"]["text"]:
            return "draft"
        escalate = oracle_escalates(state["draft_score"], state["target_score"], state["threshold"])
        return "target" if escalate else "draft"
    if policy == "generate":
        return "target" if state["target_score"] > state["draft_score"] else "draft"
    # arbitrage and rsd only generate a target step when they escalate.
    return "target"
