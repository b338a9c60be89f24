"""The graph's conditional edges and the commit node's choice: functions of the state
and the run's context. The comparisons themselves are the policy's own rule
(`Policy.escalates`, arbitrage/policies.py), so each threshold rule lives in one place.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END
from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState
from arbitrage.policies import StepScores


def step_scores(state: SolveState) -> StepScores:
    draft, target = state.get("draft"), state.get("target")
    return StepScores(
        router=state.get("router_score"),
        draft=state.get("draft_score"),
        target=state.get("target_score"),
        same_text=draft is not None and target is not None and draft["text"] == target["text"],
    )


def after_decision(state: SolveState, runtime: Runtime[SolveContext]) -> Literal["target_step", "commit"]:
    """Escalate or accept the draft step on the router's score (arbitrage) or its PRM score
    (rsd). Once a target step exists (the audit scores it) only the commit remains."""
    if state.get("target") is not None:
        return "commit"
    context = runtime.context
    return "target_step" if context.policy.escalates(context.threshold, step_scores(state)) else "commit"


def after_commit(state: SolveState, runtime: Runtime[SolveContext]) -> Literal["draft_step", "target_step", "__end__"]:
    if state.get("finished"):
        return END
    return "draft_step" if runtime.context.policy.drafts else "target_step"


def chosen_source(state: SolveState, context: SolveContext) -> Literal["draft", "target"]:
    """Which pending step the commit node keeps."""
    if state.get("target") is None:
        return "draft"
    if state.get("draft") is None:
        return "target"
    if context.policy.calls_target == "every_step":  # both steps written: the rule picks
        return "target" if context.policy.escalates(context.threshold, step_scores(state)) else "draft"
    return "target"  # a policy that calls the target only on escalation escalated
