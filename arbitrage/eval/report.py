"""`arbitrage report DIR`: PNG plots and one self-contained HTML page for a sweep or a run.

    report = build_report("runs/sweep")      # writes DIR/*.png and DIR/report.html
    print(report.html_path, report.analysis["speedups"])

The page needs no network: CSS is inline, images are base64 data URIs, there is no
script. Model text is escaped (see traces.py).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Callable, Sequence

from arbitrage.eval.plots import plot_accuracy_vs_call_rate, plot_accuracy_vs_latency, plot_time_by_node
from arbitrage.eval.run import RESULTS_FILE, read_results
from arbitrage.eval.sweep import SWEEP_FILE, read_runs
from arbitrage.eval.tradeoff import analyze, run_latency, split_curve_label
from arbitrage.eval.traces import TRACE_CSS, choose_trace_run, render_traces

REPORT_FILE = "report.html"
PLOT_FILES = {
    "call_rate": "accuracy_vs_call_rate.png",
    "latency": "accuracy_vs_latency.png",
    "time_by_node": "time_by_node.png",
}
POLICY_TITLES = {"arbitrage": "Arbitrage", "rsd": "RSD", "target_only": "target-only", "oracle": "the oracle",
                 "draft_only": "draft-only"}


def curve_title(label: str) -> str:
    """`arbitrage` -> Arbitrage; `arbitrage@features` -> Arbitrage (router features)."""
    policy, router = split_curve_label(label)
    title = POLICY_TITLES.get(policy, policy)
    return f"{title} (router {router})" if router else title


def speedup_titles(key: str) -> tuple[str, str]:
    """`arbitrage@x_vs_target_only` -> ("Arbitrage (router x)", "target-only")."""
    a, _, b = key.partition("_vs_")
    return curve_title(a), curve_title(b)


@dataclass
class Report:
    directory: Path
    html_path: Path
    plots: dict[str, Path]
    rows: list[dict]
    analysis: dict
    trace_run: str
    notes: list[str] = field(default_factory=list)


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _latency_p(summary: dict, key: str):
    return (summary.get("latency_s") or {}).get(key)


def _pair(first, second) -> str:
    return f"{_num(first, 3)} / {_num(second, 3)}"


# (header, value from a row, tooltip)
SUMMARY_COLUMNS: list[tuple[str, Callable[[dict], object], str]] = [
    ("run", lambda r: r["name"], "run directory"),
    ("τ", lambda r: r["threshold"], "threshold"),
    ("problems", lambda r: r["summary"].get("n_problems"), ""),
    ("errors", lambda r: r["summary"].get("n_errors"), "problems that ended in an error (graded wrong)"),
    ("accuracy", lambda r: r["summary"].get("accuracy"), ""),
    ("target-call rate", lambda r: r["summary"].get("target_call_rate"), "escalated steps / steps"),
    ("acceptance rate", lambda r: r["summary"].get("acceptance_rate"), "draft steps kept / draft steps proposed"),
    ("latency mean (s)", lambda r: run_latency(r["summary"]), "per problem, audit-only PRM time excluded"),
    ("p50 / p95 (s)", lambda r: _pair(_latency_p(r["summary"], "p50"), _latency_p(r["summary"], "p95")),
     "per problem, includes audit PRM time if audited"),
    ("draft tok", lambda r: r["summary"].get("draft_tokens"), ""),
    ("target tok", lambda r: r["summary"].get("target_tokens"), ""),
    ("discarded draft tok", lambda r: r["summary"].get("discarded_draft_tokens"), ""),
    ("router calls", lambda r: r["summary"].get("router_calls"), ""),
    ("router prefills", lambda r: r["summary"].get("router_prefill_calls"),
     "router calls that ran the target over the draft step (the rest the cascade accepted)"),
    ("PRM calls", lambda r: r["summary"].get("prm_calls"), "policy PRM calls (audit calls not included)"),
    ("target calls", lambda r: r["summary"].get("target_calls"), ""),
    ("wasted esc. rate", lambda r: r["summary"].get("wasted_escalation_rate"),
     "escalations whose target step scored no higher than the draft / scored escalations"),
    ("wall (s)", lambda r: r["summary"].get("wall_s"), "whole run"),
]


def speedup_text(key: str, speedup: dict) -> str:
    """One line: best speedup and the speedup at B's top accuracy, or why there is none."""
    a, b = speedup_titles(key)
    if speedup["best"] is None:
        return f"Speedup of {a} over {b} at matched accuracy: n/a ({speedup['note']})"
    best = speedup["best"]
    text = (
        f"Speedup of {a} over {b} at matched accuracy: best {_at_least(best)}{best['speedup']:.2f}x "
        f"(accuracy {best['accuracy']:.3f}: {best['latency_a']:.3g} s vs {best['latency_b']:.3g} s)"
    )
    top = speedup["at_b_top"]
    if top is not None:
        text += f"; at {b}'s top accuracy {top['accuracy']:.3f}: {_at_least(top)}{top['speedup']:.2f}x"
        if top["bound"]:
            text += f" ({speedup['note']})"
    else:
        text += f"; at {b}'s top accuracy: n/a ({speedup['note']})"
    return text


def _at_least(point: dict) -> str:
    """A bound point: A's fastest run is more accurate than the accuracy matched."""
    return ">= " if point.get("bound") else ""


def check_text(check: dict, head: str) -> str:
    """`head`, then whether A >= B held at every compared call rate, the smallest margin
    and the rates not compared."""
    if check["holds"] is None:
        return f"{head}: not measurable (the curves share no call rate in the range)"
    worst = check["min_margin"]
    failing = sum(1 for g in check["grid"] if g["margin"] is not None and g["margin"] < -1e-9)
    verdict = f"holds at all {check['compared']}" if check["holds"] else f"FAILS at {failing} of {check['compared']}"
    text = f"{head}: {verdict} compared rates (smallest margin {worst['margin']:+.3f} at rate {worst['rate']:.3g})"
    if check["uncovered"]:
        text += f"; not compared (outside a curve's swept rates): {', '.join(f'{r:.3g}' for r in check['uncovered'])}"
    return text


def rsd_check_head(check: dict, label: str = "arbitrage") -> str:
    low, high = check["range"]
    return f"{curve_title(label)} accuracy >= RSD accuracy at every matched target-call rate in [{low:g}, {high:g}]"


def oracle_gain_text(label: str, gain: dict) -> str:
    head = (f"Share of the oracle's accuracy gain over draft-only ({gain['draft_only_accuracy']:.3f}) that "
            f"{curve_title(label)} captures at the oracle's target-call rates")
    if gain["least"] is None:
        return f"{head}: n/a (no oracle rate inside its curve's swept rates)"
    each = ", ".join(f"{p['share']:.0%} at rate {p['rate']:.3g} ({p['accuracy']:.3f} vs {p['oracle_accuracy']:.3f})"
                     for p in gain["points"])
    return f"{head}: least {gain['least']:.0%}, mean {gain['mean']:.0%} ({each})"


def wasted_text(policy: str, entry: dict) -> str:
    if entry["rate"] is None:
        if not any(run["escalated_steps"] for run in entry["runs"]):
            return f"{policy}: no escalations"
        return f"{policy}: no scored escalations (sweep with --audit to PRM-score both steps of each)"
    return f"{policy}: {entry['rate']:.3f} ({entry['wasted']}/{entry['scored']} scored escalations wasted)"


def summary_lines(report: Report) -> list[str]:
    """The trade-off figures, as printed by `arbitrage report`."""
    analysis = report.analysis
    lines = [speedup_text(key, s) for key, s in analysis["speedups"].items()]
    for label, check in analysis["rsd_checks"].items():
        lines.append(check_text(check, rsd_check_head(check, label)))
    lines.extend(oracle_gain_text(label, gain) for label, gain in analysis["oracle_gain"].items())
    for policy, check in analysis["oracle_check"].items():
        head = f"Oracle sanity check: oracle accuracy >= {policy} accuracy at matched target-call rates"
        lines.append(check_text(check, head))
    lines.extend("Wasted escalations, " + wasted_text(p, e) for p, e in analysis["wasted"].items())
    return lines


# --- HTML ----------------------------------------------------------------------------

PAGE_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5em auto; max-width: 1150px;
       padding: 0 1em; color: #1f2937; background: #fafafa; }
h1 { font-size: 1.5em; } h2 { border-bottom: 2px solid #e5e7eb; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 12px; margin: .5em 0; background: #fff; }
th, td { border: 1px solid #d1d5db; padding: .2em .4em; text-align: right; }
th { background: #f3f4f6; } td.text, th.text { text-align: left; } td { white-space: nowrap; }
.wide { overflow-x: auto; }
.plots img { max-width: 100%; border: 1px solid #e5e7eb; background: #fff; margin: .4em 0; }
.figures li { margin: .3em 0; }
td.good { background: #dcfce7; } td.bad { background: #fee2e2; }
.note { color: #6b7280; font-size: 13px; }
"""


def _cell(value, tooltip: str = "") -> str:
    text = value if isinstance(value, str) else _num(value, 3)
    css = ' class="text"' if isinstance(value, str) else ""
    title = f' title="{escape(tooltip)}"' if tooltip else ""
    return f"<td{css}{title}>{escape(text)}</td>"


def summary_table_html(rows: Sequence[dict]) -> str:
    head = "".join(
        f'<th class="{"text" if name == "run" else "num"}" title="{escape(tip)}">{escape(name)}</th>'
        for name, _, tip in SUMMARY_COLUMNS
    )
    body = "".join(
        "<tr>" + "".join(_cell(get(row), tip) for _, get, tip in SUMMARY_COLUMNS) + "</tr>" for row in rows
    )
    return f'<div class="wide"><table class="summary"><tr>{head}</tr>{body}</table></div>'


def _speedup_table(key: str, speedup: dict) -> str:
    a, b = speedup_titles(key)
    if not speedup["points"]:
        return ""
    rows = "".join(
        f"<tr><td>{p['accuracy']:.3f}</td><td>{p['latency_a']:.3g}</td><td>{p['latency_b']:.3g}</td>"
        f"<td>{_at_least(p)}{p['speedup']:.2f}x</td></tr>"
        for p in speedup["points"]
    )
    return (
        f"<details><summary>{escape(a)} vs {escape(b)}: latency at each matched accuracy</summary>"
        f"<table><tr><th>accuracy</th><th>{escape(a)} latency (s)</th><th>{escape(b)} latency (s)</th>"
        f"<th>speedup</th></tr>{rows}</table></details>"
    )


def _grid_table(check: dict, a: str, b: str) -> str:
    def margin_cell(margin):
        if margin is None:
            return '<td class="text">not covered</td>'
        return f'<td class="{"good" if margin >= -1e-9 else "bad"}">{margin:+.3f}</td>'

    rows = "".join(
        f"<tr><td>{g['rate']:.3g}</td><td>{_num(g['a'], 3)}</td><td>{_num(g['b'], 3)}</td>"
        f"{margin_cell(g['margin'])}</tr>"
        for g in check["grid"]
    )
    return (
        f"<table><tr><th>target-call rate</th><th>{escape(a)} accuracy</th><th>{escape(b)} accuracy</th>"
        f"<th>margin ({escape(a)} − {escape(b)})</th></tr>{rows}</table>"
    )


def _wasted_table(wasted: dict) -> str:
    rows = []
    for policy, entry in wasted.items():
        for run in entry["runs"]:
            rows.append(
                f'<tr><td class="text">{escape(policy)}</td><td class="text">{escape(run["name"])}</td>'
                f"<td>{run['escalated_steps']}</td><td>{run['scored']}</td><td>{run['wasted']}</td>"
                f"<td>{_num(run['rate'], 3)}</td></tr>"
            )
        rows.append(
            f'<tr><th class="text">{escape(policy)}</th><th class="text">all runs (pooled)</th><th></th>'
            f"<th>{entry['scored']}</th><th>{entry['wasted']}</th><th>{_num(entry['rate'], 3)}</th></tr>"
        )
    return (
        '<table><tr><th class="text">policy</th><th class="text">run</th><th>escalated steps</th>'
        f"<th>scored escalations</th><th>wasted</th><th>wasted rate</th></tr>{''.join(rows)}</table>"
    )


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def render_page(report: Report, traces_html: str, trace_title: str) -> str:
    analysis = report.analysis
    figures = "".join(f"<li>{escape(line)}</li>" for line in summary_lines(report))
    speedup_tables = "".join(_speedup_table(k, s) for k, s in analysis["speedups"].items())
    grid = "".join(
        f"<h3>{escape(curve_title(label))} vs RSD at matched target-call rates</h3>"
        + _grid_table(check, curve_title(label), "RSD")
        for label, check in analysis["rsd_checks"].items()
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    notes = f'<ul class="note">{notes}</ul>' if notes else ""
    wasted = _wasted_table(analysis["wasted"])
    images = "".join(
        _image(report.plots[key], alt)
        for key, alt in (("call_rate", "accuracy vs target-call rate"), ("latency", "accuracy vs latency"),
                         ("time_by_node", "time per problem by node"))
    )
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Arbitrage report: {escape(report.directory.name)}</title>
<style>{PAGE_CSS}{TRACE_CSS}</style></head>
<body>
<h1>Arbitrage report: {escape(str(report.directory))}</h1>
<p class="note">{len(report.rows)} run(s); generated {generated}.</p>
{notes}
<h2>Runs</h2>
{summary_table_html(report.rows)}
<p class="note">Latency mean excludes PRM time spent only on auditing escalations; p50/p95 include it.</p>
<h2>Trade-off</h2>
<ul class="figures">{figures}</ul>
<p class="note">Speedup of A over B at matched accuracy = latency of B / latency of A at the same accuracy,
each latency interpolated linearly in accuracy along the policy's own Pareto frontier; "best" is the largest
ratio over the accuracies both frontiers reach.</p>
{speedup_tables}
{grid}
<h3>Wasted escalations</h3>
{wasted}
<h2>Plots</h2>
<div class="plots">{images}</div>
<h2>Step traces: {escape(trace_title)}</h2>
{traces_html}
</body></html>
"""


def build_report(directory: str | os.PathLike, *, trace_run: str | None = None, max_traces: int = 50) -> Report:
    """Write the plots and DIR/report.html for a sweep directory or a single run directory."""
    if max_traces < 0:
        raise ValueError(f"max_traces must be >= 0, got {max_traces}")
    directory = Path(directory)
    rows = read_runs(directory)
    analysis = analyze(rows)
    if trace_run is not None:
        chosen = next((row for row in rows if row["name"] == trace_run), None)
        if chosen is None:
            raise ValueError(f"no run named {trace_run!r} in {directory}; runs: {', '.join(r['name'] for r in rows)}")
    else:
        chosen = choose_trace_run(rows)
    plots = {
        "call_rate": plot_accuracy_vs_call_rate(analysis["curves"]["target_call_rate"],
                                                directory / PLOT_FILES["call_rate"]),
        "latency": plot_accuracy_vs_latency(analysis["curves"]["latency"], directory / PLOT_FILES["latency"]),
        "time_by_node": plot_time_by_node(rows, directory / PLOT_FILES["time_by_node"]),
    }
    report = Report(directory, directory / REPORT_FILE, plots, rows, analysis, chosen["name"],
                    notes=_sweep_notes(directory))
    records = read_results(directory / chosen["run_dir"] / RESULTS_FILE)
    title = f"{chosen['name']} ({chosen['summary'].get('escalated_steps', 0)} escalated steps)"
    page = render_page(report, render_traces(records, cap=max_traces), title)
    report.html_path.write_text(page, encoding="utf-8")
    return report


def _sweep_notes(directory: Path) -> list[str]:
    path = directory / SWEEP_FILE
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()).get("notes", []))
    except (json.JSONDecodeError, AttributeError):
        return []
