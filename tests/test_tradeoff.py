"""Trade-off maths on hand-made points with known answers."""

from __future__ import annotations

import pytest

from arbitrage.eval.tradeoff import (
    CurvePoint,
    accuracy_at_call_rate,
    analyze,
    compare_curves,
    oracle_gain_share,
    curves,
    latency_at_accuracy,
    pareto_frontier,
    run_latency,
    speedup_at_matched_accuracy,
    wasted_escalations,
)


def test_pareto_frontier_keeps_only_undominated_points_sorted_by_x():
    points = [(0.5, 0.70), (0.2, 0.60), (0.3, 0.55), (0.1, 0.40), (0.6, 0.70), (0.2, 0.50), (0.9, 0.80)]
    assert pareto_frontier(points) == [(0.1, 0.40), (0.2, 0.60), (0.5, 0.70), (0.9, 0.80)]
    assert pareto_frontier([]) == []


def test_accuracy_at_call_rate_interpolates_linearly_and_never_extrapolates():
    points = [(0.1, 0.5), (0.3, 0.7), (0.5, 0.6)]
    assert accuracy_at_call_rate(points, 0.2) == pytest.approx(0.6)
    assert accuracy_at_call_rate(points, 0.4) == pytest.approx(0.65)
    assert accuracy_at_call_rate(points, 0.3) == pytest.approx(0.7)
    assert accuracy_at_call_rate(points, 0.1) == pytest.approx(0.5)
    assert accuracy_at_call_rate(points, 0.05) is None and accuracy_at_call_rate(points, 0.55) is None
    assert accuracy_at_call_rate([(0.4, 0.3)], 0.4) == 0.3 and accuracy_at_call_rate([(0.4, 0.3)], 0.5) is None
    # two thresholds that landed on the same rate: their accuracies are averaged
    assert accuracy_at_call_rate([(0.0, 0.2), (0.0, 0.4), (1.0, 0.8)], 0.5) == pytest.approx(0.55)
    # order of the input does not matter; CurvePoints work as well as tuples
    assert accuracy_at_call_rate([CurvePoint(0.5, 0.6), CurvePoint(0.1, 0.5)], 0.3) == pytest.approx(0.55)


def test_latency_at_accuracy_follows_the_frontier_and_ignores_dominated_runs():
    points = [(1.0, 0.5), (2.0, 0.8), (1.8, 0.6)]  # all three on the frontier
    assert latency_at_accuracy(points, 0.55) == pytest.approx(1.4)  # between (1.0,0.5) and (1.8,0.6)
    assert latency_at_accuracy(points, 0.7) == pytest.approx(1.9)
    slow = [(1.0, 0.5), (3.0, 0.5), (2.0, 0.8)]  # a slower run at the same accuracy is not the curve
    assert latency_at_accuracy(slow, 0.5) == 1.0 and latency_at_accuracy(slow, 0.65) == pytest.approx(1.5)
    assert latency_at_accuracy(points, 0.9) is None and latency_at_accuracy(points, 0.4) is None


def test_speedup_at_matched_accuracy_best_and_at_b_top():
    a = [(1.0, 0.5), (3.0, 0.9)]
    b = [(2.0, 0.5), (4.0, 0.7), (5.0, 0.9)]
    result = speedup_at_matched_accuracy(a, b)
    assert [round(p["accuracy"], 6) for p in result["points"]] == [0.5, 0.7, 0.9]
    assert [p["speedup"] for p in result["points"]] == pytest.approx([2.0, 2.0, 5 / 3])
    assert result["best"]["speedup"] == pytest.approx(2.0)
    assert result["at_b_top"]["speedup"] == pytest.approx(5 / 3) and result["at_b_top"]["latency_b"] == 5.0
    assert result["overlap"] == [0.5, 0.9]


def test_speedup_against_a_single_point_baseline_like_target_only():
    a = [(1.0, 0.5), (2.0, 0.8)]
    result = speedup_at_matched_accuracy(a, [(4.0, 0.7)])
    assert result["best"]["speedup"] == pytest.approx(4.0 / (1.0 + 0.2 / 0.3))
    assert result["at_b_top"] == result["best"]


def test_speedup_is_none_with_the_reason_when_a_never_reaches_b():
    result = speedup_at_matched_accuracy([(1.0, 0.5), (2.0, 0.6)], [(3.0, 0.9)])
    assert result["best"] is None and result["at_b_top"] is None and result["overlap"] is None
    assert "no common accuracy" in result["note"]
    partial = speedup_at_matched_accuracy([(1.0, 0.5), (2.0, 0.8)], [(2.0, 0.6), (6.0, 0.9)])
    # common accuracies 0.6..0.8: 2.0 / 1.333 = 1.5 at 0.6, (2 + 4 * 2/3) / 2.0 = 2.333 at 0.8
    assert [p["speedup"] for p in partial["points"]] == pytest.approx([1.5, 7 / 3])
    assert partial["best"]["accuracy"] == pytest.approx(0.8)
    assert partial["at_b_top"] is None and "does not reach B's top accuracy 0.9" in partial["note"]


def test_compare_curves_reports_the_grid_margins_and_the_uncovered_rates():
    a = [(0.05, 0.50), (0.30, 0.75), (0.50, 0.80)]
    b = [(0.10, 0.40), (0.40, 0.70), (0.70, 0.82)]
    check = compare_curves(a, b, 0.1, 0.6, step=0.1)
    rates = [g["rate"] for g in check["grid"]]
    assert rates == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    by_rate = {g["rate"]: g for g in check["grid"]}
    assert by_rate[0.1]["a"] == pytest.approx(0.55) and by_rate[0.1]["margin"] == pytest.approx(0.15)
    assert by_rate[0.5]["margin"] == pytest.approx(0.80 - 0.74)
    assert by_rate[0.6]["margin"] is None and check["uncovered"] == [0.6]
    assert check["compared"] == 5 and check["holds"] is True
    assert check["min_margin"]["rate"] == 0.5

    worse = compare_curves(a, [(0.1, 0.9), (0.5, 0.9)], 0.1, 0.6, step=0.1)
    assert worse["holds"] is False and worse["min_margin"]["margin"] == pytest.approx(0.55 - 0.9)
    assert compare_curves(a, [(0.9, 0.9)], 0.1, 0.6)["holds"] is None
    with pytest.raises(ValueError, match="low 0.6 > high 0.1"):
        compare_curves(a, b, 0.6, 0.1)


def summary(accuracy, rate, latency, *, n=10, errors=0, audit=0.0, scored=0, wasted=0, escalated=0):
    return {
        "n_problems": n, "n_errors": errors, "accuracy": accuracy, "target_call_rate": rate,
        "latency_s": {"mean": latency, "p50": latency, "p95": latency}, "time_by_node_s": {"prm_audit": audit},
        "scored_escalations": scored, "wasted_escalations": wasted if scored else None,
        "wasted_escalation_rate": wasted / scored if scored else None, "escalated_steps": escalated,
    }


def test_run_latency_leaves_out_audit_time_per_finished_problem():
    assert run_latency(summary(0.5, 0.2, 2.0, n=10, errors=2, audit=4.0)) == pytest.approx(2.0 - 4.0 / 8)
    assert run_latency({"latency_s": {"mean": None}}) is None


def row(name, policy, threshold, s):
    return {"name": name, "policy": policy, "threshold": threshold, "run_dir": name, "summary": s}


ROWS = [
    row("arbitrage_threshold0.70", "arbitrage", 0.7, summary(0.60, 0.10, 1.2, scored=10, wasted=2, escalated=10)),
    row("arbitrage_threshold0.30", "arbitrage", 0.3, summary(0.80, 0.40, 2.0, audit=5.0, scored=30, wasted=3, escalated=30)),
    row("rsd_threshold0.50", "rsd", 0.5, summary(0.55, 0.10, 1.5, scored=20, wasted=10, escalated=20)),
    row("rsd_threshold0.90", "rsd", 0.9, summary(0.75, 0.60, 3.0, scored=0, escalated=60)),
    row("draft_only", "draft_only", None, summary(0.40, 0.0, 0.5)),
    row("target_only", "target_only", None, summary(0.80, 1.0, 4.0)),
    row("oracle_threshold0.00", "oracle", 0.0, summary(0.85, 0.30, 4.5, scored=30, wasted=0, escalated=30)),
    row("ungraded", "oracle", 0.1, summary(None, 0.2, 4.0)),
]


def test_curves_per_policy_sorted_by_x_and_ungraded_runs_left_out():
    by_rate = curves(ROWS, "target_call_rate")
    assert [p.name for p in by_rate["arbitrage"]] == ["arbitrage_threshold0.70", "arbitrage_threshold0.30"]
    assert [p.name for p in by_rate["oracle"]] == ["oracle_threshold0.00"]
    by_latency = curves(ROWS, "latency")
    assert by_latency["arbitrage"][1].x == pytest.approx(2.0 - 0.5)  # audit time removed
    with pytest.raises(ValueError, match="'tokens'"):
        curves(ROWS, "tokens")


def test_wasted_escalations_pooled_per_policy_without_the_endpoint_policies():
    wasted = wasted_escalations(ROWS)
    assert set(wasted) == {"arbitrage", "rsd", "oracle"}
    assert wasted["arbitrage"]["rate"] == pytest.approx(5 / 40)
    assert wasted["rsd"]["rate"] == pytest.approx(10 / 20)  # the unaudited run adds nothing
    assert [r["rate"] for r in wasted["rsd"]["runs"]] == [0.5, None]


def test_analyze_puts_the_figures_together():
    analysis = analyze(ROWS)
    vs_target = analysis["speedups"]["arbitrage_vs_target_only"]
    assert vs_target["at_b_top"]["speedup"] == pytest.approx(4.0 / 1.5)  # both at 0.8
    vs_rsd = analysis["speedups"]["arbitrage_vs_rsd"]
    # rsd frontier (1.5, .55)-(3.0, .75); arbitrage (1.2, .6)-(1.5, .8); common accuracies 0.6..0.75
    assert vs_rsd["overlap"] == pytest.approx([0.6, 0.75])
    assert vs_rsd["at_b_top"]["speedup"] == pytest.approx(3.0 / (1.2 + 0.3 * 0.15 / 0.2))
    check = analysis["rsd_checks"]["arbitrage"]
    assert check["range"] == [0.1, 0.6] and check["holds"] is True
    assert check["uncovered"] == [0.45, 0.5, 0.55, 0.6]  # arbitrage was swept only up to rate 0.4
    assert set(analysis["oracle_check"]) == {"arbitrage", "rsd"}
    assert analysis["frontier"]["target_call_rate"] == ["draft_only", "arbitrage_threshold0.70", "oracle_threshold0.00"]


def test_share_of_the_oracle_gain_at_matched_call_rate():
    gain = analyze(ROWS)["oracle_gain"]
    assert set(gain) == {"arbitrage", "rsd"}
    # oracle 0.85 at rate 0.3, draft-only 0.40; arbitrage at 0.3: 0.6 + 0.2 * (0.2 / 0.3)
    (point,) = gain["arbitrage"]["points"]
    assert point["rate"] == pytest.approx(0.3) and point["accuracy"] == pytest.approx(0.6 + 0.2 * 2 / 3)
    assert gain["arbitrage"]["least"] == pytest.approx((0.6 + 0.2 * 2 / 3 - 0.4) / 0.45)
    assert gain["rsd"]["mean"] == pytest.approx((0.55 + 0.2 * 0.2 / 0.5 - 0.4) / 0.45)
    # An oracle rate outside the curve's swept rates, or an oracle no better than draft-only, is left out.
    assert oracle_gain_share([(0.5, 0.7), (0.6, 0.8)], [(0.3, 0.85)], 0.4)["least"] is None
    assert oracle_gain_share([(0.1, 0.7), (0.6, 0.8)], [(0.3, 0.35)], 0.4)["points"] == []


def test_runs_of_a_named_router_make_a_curve_of_their_own_with_every_arbitrage_comparison():
    named = [dict(r, name=r["name"].replace("arbitrage", "arbitrage@features"), router="features")
             for r in ROWS if r["policy"] == "arbitrage"]
    analysis = analyze(ROWS + named)
    assert [p.name for p in analysis["curves"]["target_call_rate"]["arbitrage@features"]] == [
        "arbitrage@features_threshold0.70", "arbitrage@features_threshold0.30"]
    assert {"arbitrage_vs_rsd", "arbitrage@features_vs_rsd", "arbitrage@features_vs_target_only"} <= set(
        analysis["speedups"])
    assert set(analysis["rsd_checks"]) == {"arbitrage", "arbitrage@features"}
    assert analysis["oracle_gain"]["arbitrage@features"] == analysis["oracle_gain"]["arbitrage"]
    assert set(analysis["wasted"]) == {"arbitrage", "arbitrage@features", "rsd", "oracle"}


def test_a_policy_faster_and_more_accurate_than_the_baseline_gets_a_lower_bound_on_its_speedup():
    # A's fastest run (0.5 s) reaches 0.88, above target-only's 0.873 at 3.5 s.
    result = speedup_at_matched_accuracy([(0.5, 0.88), (0.6, 0.9)], [(3.5, 0.873)])
    (point,) = result["points"]
    assert point["bound"] is True and point["speedup"] == pytest.approx(3.5 / 0.5)
    assert result["at_b_top"] is point and result["overlap"] is None and "at least" in result["note"]
    # Against a curve it overlaps in part: exact points where both reach, bounds below A's lowest.
    mixed = speedup_at_matched_accuracy([(0.5, 0.8), (1.0, 0.9)], [(0.4, 0.6), (0.9, 0.8), (2.0, 0.85)])
    assert [(round(p["accuracy"], 3), p["bound"]) for p in mixed["points"]] == [(0.6, True), (0.8, False), (0.85, False)]
    assert mixed["points"][0]["speedup"] == pytest.approx(0.4 / 0.5) and mixed["overlap"] == [0.8, 0.85]
    assert mixed["at_b_top"]["speedup"] == pytest.approx(2.0 / 0.75)


def test_the_report_line_says_at_least_for_a_bound():
    from arbitrage.eval.report import speedup_text

    line = speedup_text("arbitrage@cascade_vs_target_only", speedup_at_matched_accuracy([(0.5, 0.88)], [(3.5, 0.873)]))
    assert line.startswith("Speedup of Arbitrage (router cascade) over target-only at matched accuracy: best >= 7.00x")
    assert "at target-only's top accuracy 0.873: >= 7.00x (A's least accurate frontier run (0.88)" in line
