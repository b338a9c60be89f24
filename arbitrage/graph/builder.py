"""Build and compile the speculative-reasoning graph for any policy.

All policies share the nodes (graph/nodes/) and the edge functions (graph/routing.py);
a policy (arbitrage/policies.py) only decides which nodes exist and how they are wired.
The only conditional edges are the real decisions: the router's or the PRM's score
against the threshold, and finish vs next step. Model handles, the policy and its
threshold arrive through the run's context (`SolveContext`), never through the state.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from arbitrage.config import Limits
from arbitrage.graph import routing
from arbitrage.graph.context import SolveContext
from arbitrage.graph.nodes.commit import commit
from arbitrage.graph.nodes.draft import draft_step
from arbitrage.graph.nodes.prm import prm_score
from arbitrage.graph.nodes.router import router_decision
from arbitrage.graph.nodes.target import target_step
from arbitrage.graph.state import SolveState
from arbitrage.policies import Policy, get_policy

# Node visits per committed step, at most: draft, router/prm, target, prm, commit.
_NODES_PER_STEP = 5


def recursion_limit(limits: Limits) -> int:
    """LangGraph's default of 25 would cut a long solution short; follow max_steps."""
    return limits.max_steps * _NODES_PER_STEP + 10


def _entry(node, policy: Policy):
    """The first node, refusing a run whose context names another policy than this wiring."""

    def entry(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
        if runtime.context.policy != policy:
            raise ValueError(
                f"this graph is wired for policy '{policy.name}' but the run's context has "
                f"'{runtime.context.policy.name}'; build the graph from the context's policy"
            )
        return node(state, runtime)

    return entry


def build_graph(policy: Policy | str, *, audit_escalations: bool = False, checkpointer=None):
    """The compiled graph for `policy`; invoke it with `initial_state(...)` and a
    `SolveContext` holding the same policy.

    `audit_escalations` adds PRM scoring of both steps after every escalation
    (arbitrage, rsd) so wasted escalations can be counted.
    """
    policy = policy if isinstance(policy, Policy) else get_policy(policy)
    graph = StateGraph(SolveState, context_schema=SolveContext)
    first = "draft_step" if policy.drafts else "target_step"
    if policy.drafts:
        graph.add_node("draft_step", _entry(draft_step, policy) if first == "draft_step" else draft_step)
    if policy.calls_target != "never":
        graph.add_node("target_step", _entry(target_step, policy) if first == "target_step" else target_step)
    graph.add_node("commit", commit)
    graph.add_edge(START, first)
    graph.add_conditional_edges("commit", routing.after_commit, {first: first, END: END})
    compile_options = {"checkpointer": checkpointer, "name": f"arbitrage_{policy.name}"}

    if policy.decider == "none":  # one model writes every step
        graph.add_edge(first, "commit")
        return graph.compile(**compile_options)
    if policy.decider == "router":
        graph.add_node("router_decision", router_decision)
        graph.add_edge("draft_step", "router_decision")
        graph.add_conditional_edges("router_decision", routing.after_decision, ["target_step", "commit"])
    elif policy.decider == "prm":
        graph.add_node("prm_score", prm_score)
        graph.add_edge("draft_step", "prm_score")
        graph.add_conditional_edges("prm_score", routing.after_decision, ["target_step", "commit"])
    else:  # both steps, both scored, then the commit node applies the rule
        graph.add_edge("draft_step", "target_step")
        audit_escalations = True

    if audit_escalations:
        if "prm_score" not in graph.nodes:
            graph.add_node("prm_score", prm_score)
            graph.add_edge("prm_score", "commit")
        graph.add_edge("target_step", "prm_score")
    else:
        graph.add_edge("target_step", "commit")
    return graph.compile(**compile_options)
