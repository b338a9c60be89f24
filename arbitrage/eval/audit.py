"""The escalation audit of a batch run, done after its problems are solved.

An escalation is wasted when the target's step scores no higher under the PRM than the
draft step it replaced. Counting that needs both steps scored, which arbitrage never
does while it solves (and rsd only for the draft). Scored inside the graph, those extra
PRM forwards would share the machine with the policy's own model calls and slow the
very run whose latency is being measured. So `run_batch` solves with the audit off and
then scores, from the results file, each escalated step's discarded draft step and the
committed target step on the prefix they both continued.

Per escalated step the audit fills the step's missing `draft_score` / `target_score` and
adds to the record's counters `audit_prm_calls`, `scored_escalations` and
`wasted_escalations`, exactly the counters the in-graph audit keeps. A step whose two
texts are equal gets one score for both (a tie, wasted). Steps that already carry both
scores are left alone, so auditing twice changes nothing.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from arbitrage.policies import Policy
from arbitrage.protocols import PRM
from arbitrage.servers.batching import last_step_rewards


def audited_after_run(policy: Policy) -> bool:
    """Policies that escalate without scoring both steps (oracle and generate score both)."""
    return policy.calls_target == "on_escalation"

Item = tuple[str, tuple[str, ...]]  # (problem, steps ending in the step to score)


def _needs_audit(step: dict) -> bool:
    return bool(step.get("escalated")) and step.get("draft_text") is not None and (
        step.get("draft_score") is None or step.get("target_score") is None
    )


def _unaudited(record: dict) -> Iterator[tuple[int, dict, tuple[str, ...]]]:
    """(index, step, prefix texts) of each escalated step of `record` still missing a score."""
    if record.get("error"):
        return
    steps = record.get("steps") or []
    for index, step in enumerate(steps):
        if _needs_audit(step):
            yield index, step, tuple(s["text"] for s in steps[:index])


def needs_audit(record: dict) -> bool:
    """Does some escalated step of `record` still lack a score (whether or not that takes a PRM call)?"""
    return next(_unaudited(record), None) is not None


def pending_items(record: dict) -> list[Item]:
    """The PRM inputs the audit of `record` still needs, each once."""
    items: list[Item] = []
    for _, step, prefix in _unaudited(record):
        texts = [step["draft_text"]] if step.get("draft_score") is None else []
        if step.get("target_score") is None and step["text"] != step["draft_text"]:
            texts.append(step["text"])  # an equal text takes the draft's score
        items.extend((record["problem"], prefix + (text,)) for text in texts)
    return list(dict.fromkeys(items))


def apply_scores(record: dict, scores: dict[Item, float]) -> dict:
    """`record` with its escalated steps scored from `scores` and its counters updated."""
    unaudited = list(_unaudited(record))
    if not unaudited:
        return record
    steps = list(record["steps"])
    counters = dict(record.get("counters") or {})
    looked_up: set[Item] = set()

    def score(prefix: tuple[str, ...], text: str) -> float:
        item = (record["problem"], prefix + (text,))
        looked_up.add(item)
        return scores[item]

    for index, original, prefix in unaudited:
        step = steps[index] = dict(original)
        if step.get("draft_score") is None:
            step["draft_score"] = score(prefix, step["draft_text"])
        if step.get("target_score") is None:
            same_text = step["text"] == step["draft_text"]
            step["target_score"] = step["draft_score"] if same_text else score(prefix, step["text"])
        counters["scored_escalations"] = counters.get("scored_escalations", 0) + 1
        counters["wasted_escalations"] = counters.get("wasted_escalations", 0) + int(
            step["target_score"] <= step["draft_score"]
        )
    counters["audit_prm_calls"] = counters.get("audit_prm_calls", 0) + len(looked_up)
    return {**record, "steps": steps, "counters": counters}


def audit_records(records: Iterable[dict], prm: PRM, *, advance: Callable[[int], None] | None = None,
                  batch_size: int = 32) -> list[dict]:
    """Every record with its escalations audited (records that need nothing come back as they were)."""
    records = list(records)
    items = list(dict.fromkeys(item for record in records for item in pending_items(record)))
    scores: dict[Item, float] = {}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        scores.update(zip(chunk, last_step_rewards(prm, chunk)))
        if advance is not None:
            advance(len(chunk))
    return [apply_scores(record, scores) for record in records]
