"""Trade-off analysis over sweep rows: accuracy against target-call rate and latency.

Inputs are the rows of `sweep.read_runs` / `run_sweep` (policy, threshold, router, name,
summary); every number comes from the summaries that `metrics.summarize` wrote.

What is computed, exactly:

- Latency of a run: the summary's mean per-problem latency minus the mean per-problem
  time of audit-only PRM scoring (`time_by_node_s["prm_audit"]` / finished problems).
  The audit measures wasted escalations and is not part of any policy's cost.
- Curves: per policy, one point per run, sorted by x. Points are `(x, accuracy)`. Runs
  of one of the config's named routers make a curve of their own, `arbitrage@NAME`;
  every comparison made for `arbitrage` is made for each such curve too.
- `pareto_frontier`: the points no other point beats on both axes (x no larger,
  accuracy no smaller, one of them strictly), sorted by x; accuracy strictly rises.
- `accuracy_at_call_rate(points, rate)`: linear interpolation of accuracy between the
  two sweep points around `rate` (points at the same rate are averaged); None outside
  the rates the sweep covered (no extrapolation).
- `latency_at_accuracy(points, acc)`: on the policy's own Pareto frontier of
  (latency, accuracy), latency interpolated linearly in accuracy: the least latency
  the policy needs to reach `acc`, given its sweep points. None outside the
  frontier's accuracy range.
- `speedup_at_matched_accuracy(a, b)`: latency_b(acc) / latency_a(acc) for every
  accuracy both frontiers reach (evaluated at all frontier accuracies of either
  inside the common range; the ratio of two piecewise-linear functions is monotone
  between breakpoints, so its maximum is among them). Reported: the best ratio and
  the ratio at B's top accuracy (None when A does not reach it). > 1 means A is
  faster. At B's accuracies below all of A's frontier, A's fastest frontier run is
  more accurate still, so its latency bounds A's: such points are marked `bound`, a
  lower bound on the speedup (A both faster and more accurate than B there).
- `compare_curves(a, b, low, high, step)`: accuracy_a - accuracy_b at a grid of call
  rates (every `step` plus both curves' own rates in [low, high]).
- `oracle_gain_share(curve, oracle, draft_only)`: at each oracle point's call rate r
  the curve covers, (accuracy_curve(r) - accuracy_draft_only) / (accuracy_oracle(r) -
  accuracy_draft_only): the share of the accuracy the oracle gains over draft-only that
  the curve captures at the same target-call rate. Oracle points no more accurate than
  draft-only are left out. Reported: each point's share, the least and the mean.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

EPS = 1e-9
RSD_CHECK_RANGE = (0.1, 0.6)
RSD_CHECK_STEP = 0.05


class CurvePoint(NamedTuple):
    x: float
    accuracy: float
    name: str = ""
    threshold: float | None = None


def run_latency(summary: dict) -> float | None:
    """Mean per-problem latency without audit-only PRM time (see module doc)."""
    mean = (summary.get("latency_s") or {}).get("mean")
    if mean is None:
        return None
    finished = summary.get("n_problems", 0) - summary.get("n_errors", 0)
    audit = (summary.get("time_by_node_s") or {}).get("prm_audit", 0.0)
    return mean - (audit / finished if finished else 0.0)


def curves(rows: Sequence[dict], axis: str) -> dict[str, list[CurvePoint]]:
    """Per policy, (x, accuracy) points sorted by x; axis is 'target_call_rate' or 'latency'.

    Runs without an accuracy (no gold answers) or without an x value are left out."""
    if axis not in ("target_call_rate", "latency"):
        raise ValueError(f"axis must be 'target_call_rate' or 'latency', got {axis!r}")
    result: dict[str, list[CurvePoint]] = {}
    for row in rows:
        summary = row["summary"]
        x = run_latency(summary) if axis == "latency" else summary.get("target_call_rate")
        if x is None or summary.get("accuracy") is None:
            continue
        point = CurvePoint(float(x), float(summary["accuracy"]), row["name"], row.get("threshold"))
        result.setdefault(curve_label(row), []).append(point)
    return {policy: sorted(points) for policy, points in result.items()}


def curve_label(row: dict) -> str:
    """The curve a run belongs to: its policy, or `policy@router` for a named router's run."""
    return row["policy"] if not row.get("router") else f"{row['policy']}@{row['router']}"


def split_curve_label(label: str) -> tuple[str, str | None]:
    """`policy@router` -> (policy, router); a plain policy name -> (name, None)."""
    policy, _, router = label.partition("@")
    return policy, router or None


def curve_policy(label: str) -> str:
    return split_curve_label(label)[0]


def pareto_frontier(points: Sequence[Sequence]) -> list:
    """Points (x to minimise, accuracy to maximise) that no other point dominates, by x."""
    ordered = sorted(points, key=lambda p: (p[0], -p[1]))
    frontier = []
    best = float("-inf")
    for point in ordered:
        if point[1] > best:
            frontier.append(point)
            best = point[1]
    return frontier


def _collapse(pairs: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted by x; y averaged over points sharing an x."""
    groups: dict[float, list[float]] = {}
    for x, y in pairs:
        groups.setdefault(x, []).append(y)
    return [(x, sum(ys) / len(ys)) for x, ys in sorted(groups.items())]


def _interpolate(pairs: list[tuple[float, float]], x: float) -> float | None:
    """Piecewise-linear y(x) through sorted, distinct-x pairs; None outside their x range."""
    if not pairs or x < pairs[0][0] - EPS or x > pairs[-1][0] + EPS:
        return None
    if len(pairs) == 1 or x <= pairs[0][0]:
        return pairs[0][1]
    for (x0, y0), (x1, y1) in zip(pairs, pairs[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pairs[-1][1]


def accuracy_at_call_rate(points: Sequence[Sequence], rate: float) -> float | None:
    """Accuracy at `rate`, interpolated between the sweep points (x = call rate, y = accuracy)."""
    return _interpolate(_collapse([(p[0], p[1]) for p in points]), rate)


def latency_at_accuracy(points: Sequence[Sequence], accuracy: float) -> float | None:
    """Least latency to reach `accuracy` along the points' Pareto frontier (x = latency)."""
    frontier = pareto_frontier(points)
    return _interpolate([(p[1], p[0]) for p in frontier], accuracy)


def speedup_at_matched_accuracy(a: Sequence[Sequence], b: Sequence[Sequence]) -> dict:
    """How much faster A is than B at equal accuracy: latency_B / latency_A (see module doc).

    Where B's accuracy is below every accuracy A's frontier reaches, A's fastest frontier
    run is at least as accurate, so its latency bounds what A needs there: those points
    carry `bound: True` and their speedup is a lower bound."""
    front_a, front_b = pareto_frontier(a), pareto_frontier(b)
    result: dict = {"points": [], "best": None, "at_b_top": None, "overlap": None, "note": ""}
    if not front_a or not front_b:
        result["note"] = "one of the policies has no points"
        return result
    a_low, a_high = front_a[0][1], front_a[-1][1]
    b_low, b_top = front_b[0][1], front_b[-1][1]
    high = min(a_high, b_top)
    if b_low > high + EPS:
        result["note"] = f"no common accuracy: A reaches {a_low:.4g}..{a_high:.4g}, B {b_low:.4g}..{b_top:.4g}"
        return result
    if max(a_low, b_low) <= high + EPS:
        result["overlap"] = [max(a_low, b_low), high]
    accuracies = sorted({p[1] for p in (*front_a, *front_b) if b_low - EPS <= p[1] <= high + EPS} | {b_low, high})
    for accuracy in accuracies:
        bound = accuracy < a_low - EPS
        latency_a = front_a[0][0] if bound else latency_at_accuracy(a, accuracy)
        latency_b = latency_at_accuracy(b, accuracy)
        if latency_a is None or latency_b is None or latency_a <= 0:
            continue
        result["points"].append({"accuracy": accuracy, "latency_a": latency_a, "latency_b": latency_b,
                                 "speedup": latency_b / latency_a, "bound": bound})
    if result["points"]:
        result["best"] = max(result["points"], key=lambda p: p["speedup"])
        top = [p for p in result["points"] if abs(p["accuracy"] - b_top) <= EPS]
        result["at_b_top"] = top[0] if top else None
    if result["at_b_top"] is None:
        result["note"] = f"A's frontier does not reach B's top accuracy {b_top:.4g} (A's best: {a_high:.4g})"
    elif result["at_b_top"]["bound"]:
        result["note"] = (f"A's least accurate frontier run ({a_low:.4g}) is above B's top accuracy {b_top:.4g}: "
                          "its latency bounds A's, so the speedup there is at least the figure given")
    return result


def compare_curves(
    a: Sequence[Sequence], b: Sequence[Sequence], low: float, high: float, step: float | None = None
) -> dict:
    """accuracy_a - accuracy_b over call rates in [low, high]: every `step` and both curves' own rates."""
    if low > high:
        raise ValueError(f"rate range is empty: low {low} > high {high}")
    rates = {round(p[0], 9) for p in (*a, *b) if low - EPS <= p[0] <= high + EPS}
    if step is not None:
        if step <= 0:
            raise ValueError(f"step must be > 0, got {step}")
        count = int(round((high - low) / step))
        rates |= {round(low + i * step, 9) for i in range(count + 1) if low + i * step <= high + EPS}
    grid = []
    for rate in sorted(rates):
        acc_a, acc_b = accuracy_at_call_rate(a, rate), accuracy_at_call_rate(b, rate)
        margin = None if acc_a is None or acc_b is None else acc_a - acc_b
        grid.append({"rate": rate, "a": acc_a, "b": acc_b, "margin": margin})
    compared = [g for g in grid if g["margin"] is not None]
    worst = min(compared, key=lambda g: g["margin"]) if compared else None
    return {
        "range": [low, high],
        "grid": grid,
        "compared": len(compared),
        "uncovered": [g["rate"] for g in grid if g["margin"] is None],
        "min_margin": worst,
        # None: nothing to compare; otherwise whether A >= B at every compared rate.
        "holds": None if not compared else all(g["margin"] >= -EPS for g in compared),
    }


def wasted_escalations(rows: Sequence[dict]) -> dict[str, dict]:
    """Per policy that escalates draft steps: each run's wasted-escalation rate and the
    pooled rate (sum wasted / sum scored). draft_only never escalates and target_only
    has no draft step to compare with, so neither appears."""
    result: dict[str, dict] = {}
    for row in rows:
        if row["policy"] in ("draft_only", "target_only"):
            continue
        summary = row["summary"]
        entry = result.setdefault(curve_label(row), {"runs": [], "wasted": 0, "scored": 0, "rate": None})
        scored = summary.get("scored_escalations") or 0
        wasted = summary.get("wasted_escalations") or 0
        entry["runs"].append(
            {"name": row["name"], "threshold": row.get("threshold"), "scored": scored, "wasted": wasted,
             "rate": summary.get("wasted_escalation_rate"), "escalated_steps": summary.get("escalated_steps", 0)}
        )
        entry["wasted"] += wasted
        entry["scored"] += scored
    for entry in result.values():
        entry["rate"] = entry["wasted"] / entry["scored"] if entry["scored"] else None
    return result


def oracle_gain_share(curve: Sequence[Sequence], oracle: Sequence[Sequence], draft_only_accuracy: float) -> dict:
    """The share of the oracle's accuracy gain over draft-only the curve keeps at the oracle's
    call rates (x = call rate; see module doc)."""
    points = []
    for rate, oracle_accuracy in _collapse([(p[0], p[1]) for p in oracle]):
        gain = oracle_accuracy - draft_only_accuracy
        accuracy = accuracy_at_call_rate(curve, rate)
        if gain <= EPS or accuracy is None:
            continue
        points.append({"rate": rate, "accuracy": accuracy, "oracle_accuracy": oracle_accuracy,
                       "share": (accuracy - draft_only_accuracy) / gain})
    shares = [p["share"] for p in points]
    return {"points": points, "least": min(shares) if shares else None,
            "mean": sum(shares) / len(shares) if shares else None, "draft_only_accuracy": draft_only_accuracy}


def analyze(rows: Sequence[dict]) -> dict:
    """Everything the report shows about the trade-off, from the sweep rows."""
    by_rate = curves(rows, "target_call_rate")
    by_latency = curves(rows, "latency")
    all_rate = [p for points in by_rate.values() for p in points]
    all_latency = [p for points in by_latency.values() for p in points]
    speedups = {}
    arbitrage_curves = [label for label in (*by_latency, *by_rate) if curve_policy(label) == "arbitrage"]
    arbitrage_curves = list(dict.fromkeys(arbitrage_curves))
    for label in arbitrage_curves:
        for baseline in ("rsd", "target_only"):
            if label in by_latency and baseline in by_latency:
                speedups[f"{label}_vs_{baseline}"] = speedup_at_matched_accuracy(
                    by_latency[label], by_latency[baseline]
                )
    rsd_checks = {}
    for label in arbitrage_curves:
        if label in by_rate and "rsd" in by_rate:
            rsd_checks[label] = compare_curves(by_rate[label], by_rate["rsd"], *RSD_CHECK_RANGE, step=RSD_CHECK_STEP)
    oracle_check = {}
    oracle_gain = {}
    if "oracle" in by_rate:
        draft_only = by_rate.get("draft_only")
        for policy, points in by_rate.items():
            # draft_only / target_only sit at rates 0 and 1, where no oracle threshold lands.
            if policy not in ("oracle", "draft_only", "target_only"):
                oracle_check[policy] = compare_curves(by_rate["oracle"], points, 0.0, 1.0)
                if draft_only:
                    baseline = sum(p.accuracy for p in draft_only) / len(draft_only)
                    oracle_gain[policy] = oracle_gain_share(points, by_rate["oracle"], baseline)
    return {
        "curves": {"target_call_rate": by_rate, "latency": by_latency},
        "frontier": {
            "target_call_rate": [p.name for p in pareto_frontier(all_rate)],
            "latency": [p.name for p in pareto_frontier(all_latency)],
        },
        "speedups": speedups,
        "wasted": wasted_escalations(rows),
        "rsd_checks": rsd_checks,
        "oracle_check": oracle_check,
        "oracle_gain": oracle_gain,
    }
