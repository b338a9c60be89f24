"""commit: append the chosen step with its source and scores, update counters,
record a training row under `generate`, and decide whether the solution is finished."""

from __future__ import annotations

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from arbitrage.graph.answer import last_boxed
from arbitrage.graph.context import SolveContext
from arbitrage.graph.routing import chosen_source
from arbitrage.graph.state import CommittedStep, SolveState
from arbitrage.graph.nodes.timing import timed
from arbitrage.servers.router_input import format_router_input
from arbitrage.protocols import AnnotatedStep

_CLEARED = {
    "draft": None, "target": None, "extra_targets": [], "draft_score": None, "target_score": None,
    "extra_target_scores": [], "router_score": None,
}


def _counters(source: str, draft: dict | None, target: dict | None, state: SolveState) -> dict[str, int]:
    chosen = target if source == "target" else draft
    counters = {"steps": 1, "committed_tokens": chosen["tokens"]}
    if source == "draft":
        counters["accepted_draft_steps"] = 1
        if target is not None:
            counters["discarded_target_tokens"] = target["tokens"]
    else:
        counters["escalated_steps"] = 1
        if draft is not None:
            counters["discarded_draft_tokens"] = draft["tokens"]
            if state.get("draft_score") is not None and state.get("target_score") is not None:
                counters["scored_escalations"] = 1
                counters["wasted_escalations"] = int(state["target_score"] <= state["draft_score"])
    return counters


def _finish_reason(state: SolveState, chosen: dict, limits) -> str | None:
    if chosen["finish_reason"] != "separator":
        return chosen["finish_reason"]
    if last_boxed(chosen["text"]) is not None:
        return "answer"
    if len(state.get("steps", [])) + 1 >= limits.max_steps:
        return "max_steps"
    committed = state.get("counters", {}).get("committed_tokens", 0) + chosen["tokens"]
    if committed >= limits.max_total_tokens:
        return "max_total_tokens"
    return None


def _training_row(state: SolveState, separator: str) -> dict:
    previous = [AnnotatedStep(step["text"], step["source"]) for step in state.get("steps", [])]
    target_scores = [state["target_score"], *state.get("extra_target_scores", [])]
    mean_target_score = sum(target_scores) / len(target_scores)
    delta = mean_target_score - state["draft_score"]
    return {
        "problem_id": state["problem_id"],
        "problem": state["problem"],
        "step_index": len(previous),
        "previous_steps": [{"text": step.text, "source": step.source} for step in previous],
        "draft_step": state["draft"]["text"],
        "target_step": state["target"]["text"],
        "target_samples": [state["target"]["text"], *(c["text"] for c in state.get("extra_targets", []))],
        "target_sample_scores": target_scores,
        "draft_tokens": state["draft"]["tokens"],
        "draft_finish_reason": state["draft"]["finish_reason"],
        "draft_token_logprobs": state["draft"]["token_logprobs"],
        "draft_score": state["draft_score"],
        "target_score": mean_target_score,
        "delta": delta,
        "label": int(delta > 0),
        "router_input": format_router_input(state["problem"], previous, state["draft"]["text"], separator=separator),
    }


def commit(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    context = runtime.context
    timings: dict[str, float] = {}
    with timed(timings, "commit"):
        source = chosen_source(state, context)
        draft, target = state.get("draft"), state.get("target")
        chosen = target if source == "target" else draft
        logprobs = draft["token_logprobs"] if draft else []
        step = CommittedStep(
            text=chosen["text"],
            source=source,
            tokens=chosen["tokens"],
            finish_reason=chosen["finish_reason"],
            escalated=source == "target",
            draft_text=draft["text"] if draft and source == "target" else None,
            draft_tokens=draft["tokens"] if draft else 0,
            draft_score=state.get("draft_score"),
            target_score=state.get("target_score"),
            router_score=state.get("router_score"),
            draft_logprob_mean=sum(logprobs) / len(logprobs) if logprobs else None,
        )
        update: dict = {**_CLEARED, "steps": [step], "counters": _counters(source, draft, target, state)}
        if context.policy.writes_training_rows:
            update["training_rows"] = [_training_row(state, context.separator)]
        reason = _finish_reason(state, chosen, context.limits)
        if reason is not None:
            solution = context.separator.join([s["text"] for s in state.get("steps", [])] + [chosen["text"]])
            update.update(finished=True, finish_reason=reason, final_answer=last_boxed(solution))
    update["timings"] = timings
    get_stream_writer()({"problem_id": state["problem_id"], "index": len(state.get("steps", [])), "step": step})
    return update
