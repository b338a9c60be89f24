"""Per-problem step traces as HTML: each step coloured by the model that wrote it, with
its PRM/router scores; an escalated step shows the discarded draft struck through.

Model text is untrusted: everything taken from a record goes through `html.escape`.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

TRACE_CSS = """
.legend { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; margin: .5em 0 1em; }
.legend .step { margin: 0; padding: .2em .6em; }
details.problem { border: 1px solid #ccc; border-radius: 6px; margin: .5em 0; padding: .3em .7em; background: #fff; }
details.problem > summary { cursor: pointer; font-family: ui-monospace, monospace; font-size: 13px; }
details.problem.correct > summary .mark { color: #15803d; }
details.problem.wrong > summary .mark, details.problem.error > summary .mark { color: #b91c1c; }
.problem-text { white-space: pre-wrap; background: #f4f4f5; padding: .4em .6em; border-radius: 4px; margin: .5em 0; }
.step { border-left: 6px solid; border-radius: 4px; margin: .35em 0; padding: .3em .6em; }
.step.src-draft { border-left-color: #2563eb; background: #dbeafe; }
.step.src-target { border-left-color: #ea580c; background: #ffedd5; }
.step-head { font-size: 12px; color: #333; display: flex; gap: .6em; flex-wrap: wrap; }
.step-head .src { font-weight: bold; text-transform: uppercase; }
.score { font-family: ui-monospace, monospace; background: rgba(255,255,255,.7); border-radius: 3px; padding: 0 .3em; }
.step-text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 13px; margin: .2em 0 0; }
.discarded { font-size: 12px; color: #555; margin-top: .2em; white-space: pre-wrap; }
.discarded del { color: #1e40af; text-decoration-thickness: 2px; }
.record-error { color: #b91c1c; font-family: ui-monospace, monospace; white-space: pre-wrap; }
"""


def choose_trace_run(rows: Sequence[dict]) -> dict:
    """The arbitrage run with the most escalations; else the run with the most escalations."""
    if not rows:
        raise ValueError("no runs to choose a trace from")
    escalations = lambda row: row["summary"].get("escalated_steps") or 0  # noqa: E731
    arbitrage = [row for row in rows if row["policy"] == "arbitrage"]
    return max(arbitrage or rows, key=escalations)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render_legend() -> str:
    return (
        '<div class="legend"><strong>Step written by:</strong>'
        '<span class="step src-draft">draft (small model)</span>'
        '<span class="step src-target">target (large model)</span>'
        "<span><del>struck-through text</del> = draft step discarded when the step was escalated</span></div>"
    )


def render_step(index: int, step: dict) -> str:
    source = "target" if step.get("source") == "target" else "draft"
    scores = []
    for key, label in (("router_score", "router"), ("draft_score", "PRM draft"), ("target_score", "PRM target")):
        if step.get(key) is not None:
            scores.append(f'<span class="score {key}">{label} {_fmt(step[key])}</span>')
    head = (
        f'<div class="step-head"><span class="src">{source}</span><span>step {index + 1}</span>'
        f'{"".join(scores)}<span>{int(step.get("tokens") or 0)} tokens</span>'
        f'{"<span>escalated</span>" if step.get("escalated") else ""}</div>'
    )
    discarded = ""
    if step.get("escalated") and step.get("draft_text") is not None:
        discarded = f'<div class="discarded">discarded draft: <del>{escape(step["draft_text"])}</del></div>'
    text = f'<div class="step-text">{escape(step.get("text") or "")}</div>'
    css = f"step src-{source}" + (" escalated" if step.get("escalated") else "")
    return f'<div class="{css}">{head}{discarded}{text}</div>'


def render_record(record: dict, *, open_: bool = False) -> str:
    steps = record.get("steps") or []
    if record.get("error"):
        state, mark = "error", "✗"
    elif record.get("correct") is None:
        state, mark = "ungraded", "·"
    else:
        state, mark = ("correct", "✓") if record["correct"] else ("wrong", "✗")
    escalated = sum(1 for s in steps if s.get("escalated"))
    latency = record.get("latency_s")
    summary = (
        f'<span class="mark">{mark}</span> {escape(str(record.get("id")))} — answer '
        f'{escape(str(record.get("final_answer")))} (gold {escape(str(record.get("gold_answer")))}) · '
        f"{len(steps)} steps, {escalated} escalated"
        + (f" · {latency:.3g} s" if isinstance(latency, (int, float)) else "")
    )
    body = [f'<div class="problem-text">{escape(str(record.get("problem") or ""))}</div>']
    if record.get("error"):
        body.append(f'<div class="record-error">error: {escape(str(record["error"]))}</div>')
    body.extend(render_step(i, step) for i, step in enumerate(steps))
    return (
        f'<details class="problem {state}"{" open" if open_ else ""}><summary>{summary}</summary>'
        + "".join(body)
        + "</details>"
    )


def render_traces(records: Sequence[dict], *, cap: int, unfolded: int = 3) -> str:
    """The legend and up to `cap` problems (the first `unfolded` open)."""
    shown = list(records)[:cap]
    parts = [render_legend()]
    if len(records) > cap:
        parts.append(f"<p>Showing the first {cap} of {len(records)} problems.</p>")
    parts.extend(render_record(record, open_=index < unfolded) for index, record in enumerate(shown))
    return "".join(parts)
