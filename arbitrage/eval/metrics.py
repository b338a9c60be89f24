"""One function computes every reported metric from the result records, so `run`,
`sweep` and `report` always agree."""

from __future__ import annotations

import statistics
from typing import Iterable

COUNTERS = (
    "steps",
    "draft_steps",
    "accepted_draft_steps",
    "escalated_steps",
    "draft_tokens",
    "target_tokens",
    "committed_tokens",
    "discarded_draft_tokens",
    "discarded_target_tokens",
    "router_calls",
    "router_prefill_calls",
    "prm_calls",
    "audit_prm_calls",
    "reused_prm_scores",
    "target_calls",
    "scored_escalations",
    "wasted_escalations",
)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_stats(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"mean": None, "p50": None, "p95": None}
    return {
        "mean": statistics.fmean(latencies),
        "p50": _percentile(latencies, 0.50),
        "p95": _percentile(latencies, 0.95),
    }


def summarize(records: Iterable[dict], *, wall_s: float | None = None) -> dict:
    """Aggregate metrics over result records (one per problem).

    accuracy counts a problem that ended in an error as wrong, and is None when no
    problem has a gold answer. Rates are ratios of totals over all problems.
    wasted_escalations is None unless some escalation had both steps scored.
    """
    records = list(records)
    finished = [r for r in records if not r.get("error")]
    totals = {name: 0 for name in COUNTERS}
    for record in finished:
        for name, value in record.get("counters", {}).items():
            if name in totals:
                totals[name] += value
    graded = [r for r in records if r.get("gold_answer") is not None]
    time_by_node: dict[str, float] = {}
    for record in finished:
        for node, seconds in record.get("timings_s", {}).items():
            time_by_node[node] = time_by_node.get(node, 0.0) + seconds
    finish_reasons: dict[str, int] = {}
    for record in finished:
        reason = record.get("finish_reason") or "unknown"
        finish_reasons[reason] = finish_reasons.get(reason, 0) + 1
    scored = totals["scored_escalations"]
    return {
        "n_problems": len(records),
        "n_errors": len(records) - len(finished),
        "accuracy": _ratio(sum(bool(r.get("correct")) for r in graded), len(graded)) if graded else None,
        "acceptance_rate": _ratio(totals["accepted_draft_steps"], totals["draft_steps"]),
        "target_call_rate": _ratio(totals["escalated_steps"], totals["steps"]),
        **{name: totals[name] for name in COUNTERS if name not in ("scored_escalations", "wasted_escalations")},
        "scored_escalations": scored,
        "wasted_escalations": totals["wasted_escalations"] if scored else None,
        "wasted_escalation_rate": _ratio(totals["wasted_escalations"], scored) if scored else None,
        "latency_s": latency_stats([r["latency_s"] for r in finished]),
        "wall_s": wall_s,
        "time_by_node_s": time_by_node,
        "time_per_step_by_node_s": {node: s / totals["steps"] for node, s in time_by_node.items()}
        if totals["steps"]
        else {},
        "finish_reasons": finish_reasons,
        "error_messages": error_messages(records),
    }


def error_messages(records: Iterable[dict]) -> list[dict]:
    """Each distinct error text with how many problems ended in it, in order of first appearance."""
    counts: dict[str, int] = {}
    for record in records:
        if record.get("error"):
            counts[record["error"]] = counts.get(record["error"], 0) + 1
    return [{"message": message, "count": count} for message, count in counts.items()]
