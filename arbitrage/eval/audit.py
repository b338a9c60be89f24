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

from typing import Callable, Iterable, Sequence

from arbitrage.protocols import PRM, last_step_reward
from arbitrage.servers.batching import BatchedPRM

# The policies that escalate without scoring both steps (oracle and generate score both).
AUDITED_AFTER_RUN = ("arbitrage", "rsd")

Item = tuple[str, tuple[str, ...]]  # (problem, steps ending in the step to score)


def _needs_audit(step: dict) -> bool:
    return bool(step.get("escalated")) and step.get("draft_text") is not None and (
        step.get("draft_score") is None or step.get("target_score") is None
    )


def needs_audit(record: dict) -> bool:
    """Does some escalated step of `record` still lack a score (whether or not that takes a PRM call)?"""
    return not record.get("error") and any(_needs_audit(step) for step in record.get("steps") or [])


def pending_items(record: dict) -> list[Item]:
    """The PRM inputs the audit of `record` still needs, each once."""
    items: list[Item] = []
    if record.get("error"):
        return items
    steps = record.get("steps") or []
    for index, step in enumerate(steps):
        if not _needs_audit(step):
            continue
        prefix = tuple(s["text"] for s in steps[:index])
        texts = [step["draft_text"]] if step.get("draft_score") is None else []
        if step.get("target_score") is None and step["text"] != step["draft_text"]:
            texts.append(step["text"])  # an equal text takes the draft's score
        items.extend((record["problem"], prefix + (text,)) for text in texts)
    return list(dict.fromkeys(items))


def apply_scores(record: dict, scores: dict[Item, float]) -> dict:
    """`record` with its escalated steps scored from `scores` and its counters updated."""
    if not needs_audit(record):
        return record
    pending = pending_items(record)
    steps = [dict(step) for step in record["steps"]]
    counters = dict(record.get("counters") or {})
    for index, step in enumerate(steps):
        if not _needs_audit(step):
            continue
        prefix = tuple(s["text"] for s in steps[:index])
        if step.get("draft_score") is None:
            step["draft_score"] = scores[(record["problem"], prefix + (step["draft_text"],))]
        if step.get("target_score") is None:
            if step["text"] == step["draft_text"]:
                step["target_score"] = step["draft_score"]
            else:
                step["target_score"] = scores[(record["problem"], prefix + (step["text"],))]
        counters["scored_escalations"] = counters.get("scored_escalations", 0) + 1
        counters["wasted_escalations"] = counters.get("wasted_escalations", 0) + int(
            step["target_score"] <= step["draft_score"]
        )
    counters["audit_prm_calls"] = counters.get("audit_prm_calls", 0) + len(pending)
    return {**record, "steps": steps, "counters": counters}


def score_items(
    prm: PRM, items: Sequence[Item], *, batch_size: int = 32, advance: Callable[[int], None] | None = None
) -> dict[Item, float]:
    """The PRM reward of each item's last step, batched when the PRM can batch."""
    scores: dict[Item, float] = {}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        if isinstance(prm, BatchedPRM) and not hasattr(prm, "score_last"):
            rewards = [r[-1] for r in prm.score_batch([(problem, list(steps)) for problem, steps in chunk])]
        else:
            rewards = [last_step_reward(prm, problem, list(steps)) for problem, steps in chunk]
        scores.update(zip(chunk, (float(r) for r in rewards)))
        if advance is not None:
            advance(len(chunk))
    return scores


def audit_records(records: Iterable[dict], prm: PRM, *, advance: Callable[[int], None] | None = None) -> list[dict]:
    """Every record with its escalations audited (records that need nothing come back as they were)."""
    records = list(records)
    items = list(dict.fromkeys(item for record in records for item in pending_items(record)))
    scores = score_items(prm, items, advance=advance)
    return [apply_scores(record, scores) for record in records]
