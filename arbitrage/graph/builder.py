"""Build and compile the speculative-reasoning graph for any policy.

All policies share the nodes (arbitrage/nodes/) and the routing functions
(graph/routing.py); a policy only decides which nodes exist and how they are
wired. The only conditional edges are the real decisions: router vs threshold
(arbitrage), PRM score vs threshold (rsd), and finish vs next step. Model handles
arrive through the run's context (`SolveContext`), never through the state.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from arbitrage.config import POLICIES, Limits
from arbitrage.graph import routing
from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState
from arbitrage.nodes.commit import commit
from arbitrage.nodes.draft import draft_step
from arbitrage.nodes.prm import prm_score
from arbitrage.nodes.router import router_decision
from arbitrage.nodes.target import target_step

# Node visits per committed step, at most: draft, router/prm, target, prm, commit.
_NODES_PER_STEP = 5


def recursion_limit(limits: Limits) -> int:
    """LangGraph's default of 25 would cut a long solution short; follow max_steps."""
    return limits.max_steps * _NODES_PER_STEP + 10


def build_graph(policy: str, *, audit_escalations: bool = False, checkpointer=None):
    """The compiled graph for `policy`; invoke it with `initial_state(...)` and a `SolveContext`.

    `audit_escalations` adds PRM scoring of both steps after every escalation
    (arbitrage, rsd) so wasted escalations can be counted.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    graph = StateGraph(SolveState, context_schema=SolveContext)
    graph.add_node("commit", commit)

    if policy == "target_only":
        graph.add_node("target_step", target_step)
        graph.add_edge(START, "target_step")
        graph.add_edge("target_step", "commit")
        graph.add_conditional_edges("commit", routing.after_commit, {"target_step": "target_step", END: END})
        return graph.compile(checkpointer=checkpointer, name=f"arbitrage_{policy}")

    graph.add_node("draft_step", draft_step)
    graph.add_edge(START, "draft_step")
    graph.add_conditional_edges("commit", routing.after_commit, {"draft_step": "draft_step", END: END})
    if policy == "draft_only":
        graph.add_edge("draft_step", "commit")
        return graph.compile(checkpointer=checkpointer, name=f"arbitrage_{policy}")

    graph.add_node("target_step", target_step)
    if policy == "arbitrage":
        graph.add_node("router_decision", router_decision)
        graph.add_edge("draft_step", "router_decision")
        graph.add_conditional_edges("router_decision", routing.after_router, ["target_step", "commit"])
    elif policy == "rsd":
        graph.add_node("prm_score", prm_score)
        graph.add_edge("draft_step", "prm_score")
        graph.add_conditional_edges("prm_score", routing.after_prm, ["target_step", "commit"])
    else:  # oracle, generate: both steps, both scored, then the commit node chooses
        graph.add_edge("draft_step", "target_step")
        audit_escalations = True

    if audit_escalations:
        if "prm_score" not in graph.nodes:
            graph.add_node("prm_score", prm_score)
            graph.add_edge("prm_score", "commit")
        graph.add_edge("target_step", "prm_score")
    else:
        graph.add_edge("target_step", "commit")
    return graph.compile(checkpointer=checkpointer, name=f"arbitrage_{policy}")
