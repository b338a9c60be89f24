"""PNG figures of a sweep: accuracy vs target-call rate, accuracy vs latency, time by node.

Built on `matplotlib.figure.Figure` (no pyplot), so nothing here touches the global
backend or needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from arbitrage.eval.tradeoff import CurvePoint, pareto_frontier

POLICY_COLORS = {
    "arbitrage": "#1f77b4",
    "rsd": "#ff7f0e",
    "oracle": "#2ca02c",
    "draft_only": "#7f7f7f",
    "target_only": "#d62728",
    "generate": "#8c564b",
}
POLICY_LABELS = {
    "arbitrage": "Arbitrage (router)",
    "rsd": "RSD (PRM of draft)",
    "oracle": "Oracle (PRM of both)",
    "draft_only": "draft only",
    "target_only": "target only",
    "generate": "generate",
}
# Curves of the config's named routers (`arbitrage@NAME`), in the order they come.
EXTRA_COLORS = ["#9467bd", "#17becf", "#bcbd22", "#e377c2", "#333333"]
NODE_COLORS = {
    "draft": "#4c9be8",
    "router": "#9467bd",
    "prm": "#bcbd22",
    "prm_audit": "#dbdb8d",
    "target": "#f28e2b",
    "commit": "#17becf",
    "graph_overhead": "#c7c7c7",
}
NODE_LABELS = {"prm_audit": "prm (audit only, not policy cost)", "graph_overhead": "graph overhead"}


# Each policy's threshold labels sit on a different side of its points, so curves that
# pass close to each other do not print their labels on top of one another.
_LABEL_OFFSETS = [(4, -11), (4, 5), (-34, 5), (-34, -11)]


def _router_curve_label(label: str) -> str:
    """`arbitrage@features` -> "Arbitrage (router features)"."""
    policy, _, router = label.partition("@")
    return f"{POLICY_LABELS.get(policy, policy).split(' (')[0]} (router {router})" if router else label


def _threshold_label(point: CurvePoint) -> str:
    return "" if point.threshold is None else f"τ={point.threshold:g}"


def _tradeoff_figure(
    curves: dict[str, list[CurvePoint]], xlabel: str, title: str, *, x_scale: float = 1.0
) -> Figure:
    figure = Figure(figsize=(9.5, 5.5), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    every = [p for points in curves.values() for p in points]
    frontier = pareto_frontier(every)
    if len(frontier) > 1:
        axes.plot(
            [p.x * x_scale for p in frontier], [p.accuracy for p in frontier],
            linestyle="--", color="black", linewidth=1, alpha=0.6, zorder=1,
        )
    if frontier:
        axes.scatter(
            [p.x * x_scale for p in frontier], [p.accuracy for p in frontier], s=190, facecolors="none",
            edgecolors="black", linewidths=1.2, zorder=2, label="Pareto frontier (all runs)",
        )
    for index, (policy, points) in enumerate(curves.items()):
        extra = [label for label in curves if label not in POLICY_COLORS]
        color = POLICY_COLORS.get(policy) or EXTRA_COLORS[extra.index(policy) % len(EXTRA_COLORS)]
        offset = _LABEL_OFFSETS[index % len(_LABEL_OFFSETS)]
        if all(p.threshold is not None for p in points):
            # A curve traced by the threshold: joining by x would zig-zag where latencies are close.
            points = sorted(points, key=lambda p: p.threshold)
        single = len(points) == 1 and points[0].threshold is None
        axes.plot(
            [p.x * x_scale for p in points], [p.accuracy for p in points],
            marker="*" if single else "o", markersize=13 if single else 6, linestyle="" if single else "-",
            color=color, label=POLICY_LABELS.get(policy, _router_curve_label(policy)), zorder=3,
        )
        for point in points:
            label = _threshold_label(point)
            if label:
                axes.annotate(label, (point.x * x_scale, point.accuracy), textcoords="offset points",
                              xytext=offset, fontsize=7, color=color)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("accuracy (fraction of problems correct)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if every:
        figure.legend(loc="outside right upper", fontsize=8)  # outside: never hides a point
    else:
        axes.text(0.5, 0.5, "no graded runs", ha="center", va="center", transform=axes.transAxes)
    return figure


def latency_unit(values: Sequence[float]) -> tuple[str, float]:
    """Seconds, or milliseconds when every value is under a second."""
    return ("ms", 1000.0) if values and max(values) < 1.0 else ("s", 1.0)


def plot_accuracy_vs_call_rate(curves: dict[str, list[CurvePoint]], path: Path) -> Path:
    figure = _tradeoff_figure(
        curves, "target-call rate (escalated steps / all steps)", "Accuracy vs target-call rate"
    )
    figure.axes[0].set_xlim(-0.03, 1.03)
    figure.savefig(path)
    return path


def plot_accuracy_vs_latency(curves: dict[str, list[CurvePoint]], path: Path) -> Path:
    unit, scale = latency_unit([p.x for points in curves.values() for p in points])
    figure = _tradeoff_figure(
        curves, f"mean latency per problem ({unit}; audit PRM time excluded)", "Accuracy vs latency",
        x_scale=scale,
    )
    figure.savefig(path)
    return path


def plot_time_by_node(rows: Sequence[dict], path: Path) -> Path:
    """Stacked bars: mean seconds per problem spent in each node, one bar per run."""
    per_run = []
    for row in rows:
        summary = row["summary"]
        finished = summary.get("n_problems", 0) - summary.get("n_errors", 0)
        nodes = summary.get("time_by_node_s") or {}
        per_run.append({node: seconds / finished for node, seconds in nodes.items()} if finished else {})
    nodes = [n for n in NODE_COLORS if any(n in r for r in per_run)]
    nodes += sorted({n for r in per_run for n in r} - set(nodes))
    unit, scale = latency_unit([sum(r.values()) for r in per_run])
    height = max(3.0, 0.38 * len(rows) + 1.8)
    figure = Figure(figsize=(9, height), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    labels = [row["name"] for row in rows]
    left = [0.0] * len(rows)
    for node in nodes:
        widths = [r.get(node, 0.0) * scale for r in per_run]
        axes.barh(
            labels, widths, left=left, color=NODE_COLORS.get(node, "#999999"),
            hatch="//" if node == "prm_audit" else None, edgecolor="white", linewidth=0.5,
            label=NODE_LABELS.get(node, node),
        )
        left = [a + b for a, b in zip(left, widths)]
    axes.invert_yaxis()
    axes.set_xlabel(f"mean time per problem ({unit})")
    axes.set_title("Where the time goes, per run (node time per problem)")
    axes.grid(True, axis="x", alpha=0.3)
    if nodes:
        figure.legend(loc="outside lower center", ncol=min(4, len(nodes)), fontsize=8, frameon=False)
    figure.savefig(path)
    return path
