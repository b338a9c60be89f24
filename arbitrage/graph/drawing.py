"""Draw a policy's graph offline: Mermaid text, or PNG/SVG rendered with matplotlib.

LangGraph's own PNG export calls a web service or needs graphviz; this needs neither.
Solid arrows are fixed edges, dashed ones the conditional (threshold / finish) edges.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = ("mermaid", "png", "svg")

_NODE_COLOURS = {
    "draft_step": "#cfe8ff",
    "router_decision": "#ffe7b3",
    "prm_score": "#e6d9ff",
    "target_step": "#ffd1d1",
    "commit": "#d7f5d7",
}


# What each conditional edge means (graph/routing.py holds the comparisons).
_EDGE_LABELS = {
    ("router_decision", "target_step"): "escalate: y_hat > threshold",
    ("router_decision", "commit"): "accept",
    ("prm_score", "target_step"): "reject: s_d < threshold",
    ("prm_score", "commit"): "accept: s_d >= threshold",
    ("commit", "__end__"): "finished",
    ("commit", "draft_step"): "next step",
    ("commit", "target_step"): "next step",
}


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth from __start__, ignoring loop edges (those that lead back up)."""
    first_seen = {"__start__": 0}
    frontier = ["__start__"]
    while frontier:
        reached = [t for s, t in edges if s in frontier and t not in first_seen]
        for node in reached:
            first_seen[node] = first_seen[next(s for s, t in edges if t == node and s in frontier)] + 1
        frontier = reached
    forward = [(s, t) for s, t in edges if first_seen.get(t, 0) >= first_seen.get(s, 0)]
    depth = {node: 0 for node in nodes}
    for _ in nodes:
        for source, target in forward:
            depth[target] = max(depth[target], depth[source] + 1)
    return depth


def render_figure(graph, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    drawable = graph.get_graph()
    nodes = list(drawable.nodes)
    edges = [(e.source, e.target, e.conditional) for e in drawable.edges]
    depth = _layers(nodes, [(s, t) for s, t, _ in edges])
    rows: dict[int, list[str]] = {}
    for node in nodes:
        rows.setdefault(depth[node], []).append(node)
    position = {}
    for level, members in rows.items():
        for index, node in enumerate(members):
            position[node] = ((index - (len(members) - 1) / 2) * 3.2, -level * 1.6)

    figure, axes = plt.subplots(figsize=(7, 1.4 * (len(rows) + 1)))
    axes.set_axis_off()
    for node, (x, y) in position.items():
        label = {"__start__": "start", "__end__": "end"}.get(node, node)
        colour = _NODE_COLOURS.get(node, "#eeeeee")
        axes.add_patch(
            FancyBboxPatch((x - 1.2, y - 0.3), 2.4, 0.6, boxstyle="round,pad=0.05", fc=colour, ec="#333333")
        )
        axes.text(x, y, label, ha="center", va="center", fontsize=10, family="monospace")
    for source, target, conditional in edges:
        (x0, y0), (x1, y1) = position[source], position[target]
        if y1 >= y0:  # a loop back up: around the left side of the boxes
            ends, bend = ((x0 - 1.25, y0), (x1 - 1.25, y1)), "arc3,rad=-0.5"
        elif y0 - y1 > 2.0:  # skips a level: around the right side
            ends, bend = ((x0 + 1.25, y0), (x1 + 1.25, y1)), "arc3,rad=-0.4"
        else:
            ends, bend = ((x0, y0 - 0.3), (x1, y1 + 0.3)), "arc3,rad=0.0"
        arrow = FancyArrowPatch(
            *ends,
            arrowstyle="-|>",
            mutation_scale=14,
            linestyle="--" if conditional else "-",
            connectionstyle=bend,
            color="#444444",
            shrinkA=4,
            shrinkB=4,
        )
        axes.add_patch(arrow)
        label = _EDGE_LABELS.get((source, target))
        if label and conditional:
            (ax0, ay0), (ax1, ay1) = ends
            offset = -1.0 if y1 >= y0 else (1.0 if y0 - y1 > 2.0 else 0.1)
            axes.text((ax0 + ax1) / 2 + offset, (ay0 + ay1) / 2, label, fontsize=8, color="#444444",
                      ha="left" if offset > 0 else "right", va="center", style="italic")
    xs = [x for x, _ in position.values()]
    ys = [y for _, y in position.values()]
    axes.set_xlim(min(xs) - 2.5, max(xs) + 2.5)
    axes.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    axes.set_title(title)
    return figure


def draw(graph, fmt: str, output: str | Path | None, *, title: str = "") -> str | None:
    """Write the drawing to `output` (Mermaid text goes to the return value when no output)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "mermaid":
        text = graph.get_graph().draw_mermaid()
        if output is not None:
            Path(output).write_text(text)
        return text
    if output is None:
        raise ValueError(f"--output is required for format {fmt}")
    import matplotlib.pyplot as plt

    figure = render_figure(graph, title)
    figure.savefig(output, format=fmt, bbox_inches="tight", dpi=150)
    plt.close(figure)
    return None
