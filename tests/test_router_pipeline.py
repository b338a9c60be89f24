"""Router data: labels, class bins, balancing, splits, annotation; training and loading."""

from __future__ import annotations

import json
import math
import random

import pytest

from arbitrage.protocols import AnnotatedStep, RouterQuery, StepOutput
from arbitrage.router.dataset import (
    class_edges, delta_class, downsample_majority, router_text, rows_from_records, split_of,
)
from arbitrage.router.evaluate import router_metrics
from arbitrage.router.fit_features import fit_feature_router
from arbitrage.servers.feature_router import FEATURES, FeatureRouter, query_features, row_features


def row(problem_id="p1", delta=0.3, draft="d1", previous=(("d0", "draft"), ("t1", "target")), logprobs=(-0.1, -2.0)):
    return {
        "problem_id": problem_id, "problem": "How many?", "step_index": len(previous),
        "previous_steps": [{"text": t, "source": s} for t, s in previous],
        "draft_step": draft, "target_step": "t", "draft_tokens": len(logprobs),
        "draft_token_logprobs": list(logprobs), "draft_score": 0.5, "target_score": 0.5 + delta,
        "delta": delta, "label": int(delta > 0),
    }


def test_label_classes_split_delta_symmetrically_so_the_upper_half_is_delta_positive():
    assert class_edges(2) == [0.0]
    assert class_edges(4) == [-0.5, 0.0, 0.5]
    assert len(class_edges(10)) == 9
    for n in (2, 4, 10):
        for delta in (-1.0, -0.31, -1e-9, 0.0, 1e-9, 0.2, 0.99):
            assert (delta_class(delta, n) >= n // 2) == (delta > 0)
    assert [delta_class(d, 4) for d in (-0.9, -0.2, 0.2, 0.9)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="n_classes must be one of"):
        class_edges(3)


def test_downsampling_balances_by_dropping_the_majority():
    rows = [row(f"p{i}", delta=-0.2) for i in range(30)] + [row(f"q{i}", delta=0.4) for i in range(10)]
    balanced = downsample_majority(rows, seed=0)
    assert sum(r["label"] for r in balanced) == 10 and len(balanced) == 20
    assert {r["problem_id"] for r in balanced if r["label"] == 1} == {f"q{i}" for i in range(10)}
    assert downsample_majority(rows, seed=0) == balanced  # seeded


def test_splits_are_by_problem_and_stable():
    ids = [f"lab-{i}" for i in range(2000)]
    splits = [split_of(i) for i in ids]
    assert splits == [split_of(i) for i in ids]
    shares = {name: splits.count(name) / len(ids) for name in ("train", "validation", "test")}
    assert 0.65 < shares["train"] < 0.75 and 0.12 < shares["test"] < 0.18


def test_router_text_follows_the_paper_annotation_and_can_drop_it():
    text = router_text(row())
    assert text == "How many?\n\nModel 0: d0\n\nModel 1: t1\n\nModel 0: d1"
    assert router_text(row(), annotate=False) == "How many?\n\nd0\n\nt1\n\nd1"


def test_rows_come_only_from_finished_generate_records():
    records = [{"error": None, "training_rows": [row("a"), row("a")]}, {"error": "boom", "training_rows": [row("b")]},
               {"error": None}]
    assert [r["problem_id"] for r in rows_from_records(records)] == ["a", "a"]


def test_router_metrics_on_a_perfect_and_a_reversed_router():
    rows = [row(delta=d) for d in (-0.5, -0.1, 0.2, 0.6)]
    perfect = router_metrics([0.1, 0.3, 0.7, 0.9], rows)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["auroc"] == 1.0
    assert perfect["balanced_accuracy"] == 1.0 and perfect["accuracy_label_1"] == 1.0
    reversed_ = router_metrics([0.9, 0.7, 0.3, 0.1], rows)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["balanced_accuracy"] == 0.0


def test_feature_router_learns_from_draft_confidence_and_round_trips(tmp_path):
    rng = random.Random(0)
    rows = []
    for i in range(200):
        unsure = i % 2 == 0
        logprobs = [rng.uniform(-3, -1.5) if unsure else rng.uniform(-0.3, 0) for _ in range(8)]
        rows.append(row(f"p{i}", delta=0.4 if unsure else -0.4, logprobs=logprobs))
    router = fit_feature_router(rows)
    metrics = router_metrics([router.probability(row_features(r)) for r in rows], rows)
    assert metrics["auroc"] > 0.95
    router.save(tmp_path)
    loaded = FeatureRouter.load(tmp_path)
    query = RouterQuery("How many?", [AnnotatedStep("d0", "draft")], StepOutput("d1", 8, "separator", [-2.5] * 8))
    assert loaded.score(query) == pytest.approx(router.score(query)) and loaded.score(query) > 0.5
    assert len(query_features(query)) == len(row_features(rows[0]))


def test_a_row_and_the_query_for_the_same_step_get_the_same_features():
    logprobs = [-0.05, -2.5, -0.3, 0.0]
    query = RouterQuery("How many?", [AnnotatedStep("d0", "draft"), AnnotatedStep("t1", "target")],
                        StepOutput("d1", 4, "separator", logprobs))
    assert query_features(query, FEATURES) == pytest.approx(row_features(row(logprobs=logprobs), FEATURES))
    by_name = dict(zip(FEATURES, row_features(row(logprobs=logprobs), FEATURES)))
    assert by_name["logprob_min"] == -2.5 and by_name["low_confidence_fraction"] == 0.25
    assert by_name["step_index"] == pytest.approx(math.log1p(2)) and by_name["target_fraction_before"] == 0.5


def test_a_feature_router_scores_with_the_features_it_was_saved_with(tmp_path):
    # A router fitted on a subset of the features keeps loading and reads only its own.
    names = ["logprob_mean", "step_index"]
    FeatureRouter(names, [0.0, 0.0], [1.0, 1.0], [0.0, 1.0], 0.0).save(tmp_path)
    loaded = FeatureRouter.load(tmp_path)
    assert loaded.features == tuple(names)
    assert loaded.score_row(row()) == pytest.approx(1 / (1 + math.exp(-math.log1p(2))))  # step_index only
    payload = json.loads((tmp_path / "feature_router.json").read_text())
    payload["features"][0] = "entropy_of_the_moon"
    (tmp_path / "feature_router.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="entropy_of_the_moon"):
        FeatureRouter.load(tmp_path)
    with pytest.raises(ValueError, match="2 features but 1 means"):
        FeatureRouter(names[:2], [0.0], [1.0, 1.0], [1.0, 1.0], 0.0)


def test_neural_router_trains_from_a_prm_checkpoint_and_scores(tmp_path):
    from tiny_models import save_tiny

    from arbitrage.router.train import RouterTrainingOptions, score_rows, train_router

    prm = save_tiny(tmp_path / "prm", "token", num_labels=1)
    rows = [row(f"p{i}", delta=0.5 if i % 3 == 0 else -0.3, draft="unsure!" if i % 3 == 0 else "sure.")
            for i in range(48)]
    options = RouterTrainingOptions(epochs=6, learning_rate=3e-3, batch_size=16, patience=6)
    record = train_router(rows[:36], rows[36:], prm, tmp_path / "router", options, progress=False)
    assert record["train_rows"] == 24  # 12 positives, 12 of the 24 negatives kept
    best = max(h["spearman"] for h in record["history"])
    scores = score_rows(tmp_path / "router", rows[36:])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert router_metrics(scores, rows[36:])["spearman"] == pytest.approx(best)
    assert best > 0.5
    saved = json.loads((tmp_path / "router" / "router_config.json").read_text())
    assert saved["history"] == record["history"] and saved["annotate"] is True
    assert record["history"][saved["best_epoch"]]["spearman"] == pytest.approx(best)


def test_ablation_trains_each_variant_and_writes_the_table(tmp_path):
    from tiny_models import save_tiny
    from typer.testing import CliRunner

    from arbitrage.cli import app
    from arbitrage.router.ablate import VARIANTS
    from arbitrage.router.dataset import write_rows

    prm = save_tiny(tmp_path / "prm", "token", num_labels=1)
    data = tmp_path / "data"
    data.mkdir()
    deltas = [0.6, -0.7, 0.2, -0.2, 0.9, -0.1]
    for split, count in (("train", 24), ("validation", 12), ("test", 12)):
        write_rows(data / f"{split}.jsonl", [row(f"{split}{i}", delta=deltas[i % 6], draft=f"s{i % 6}")
                                            for i in range(count)])
    result = CliRunner().invoke(app, ["router", "ablate", "--data", str(data), "--init", str(prm),
                                      "--output", str(tmp_path / "ablation"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "ablation" / "ablation.md").read_text()
    assert all(f"| {name} |" in table for name in VARIANTS)
    assert (tmp_path / "ablation" / "4_classes" / "config.json").exists()

    # A rerun after a stop trains only the variants missing from ablation.json.
    import shutil

    kept = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    (tmp_path / "ablation" / "ablation.json").write_text(json.dumps(kept[:-1]))
    shutil.rmtree(tmp_path / "ablation" / "4_classes")
    shutil.rmtree(tmp_path / "ablation" / "10_classes")
    result = CliRunner().invoke(app, ["router", "ablate", "--data", str(data), "--init", str(prm),
                                      "--output", str(tmp_path / "ablation"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ablation" / "10_classes" / "config.json").exists()
    assert not (tmp_path / "ablation" / "4_classes").exists()
    assert json.loads((tmp_path / "ablation" / "ablation.json").read_text())[:-1] == kept[:-1]


def test_build_data_from_two_shards_splits_rows_by_problem(tmp_path):
    from dataclasses import dataclass

    from fakes import ScriptedGenerator, ScriptedPRM

    from arbitrage.config import Config
    from arbitrage.router.build_data import build_router_data
    from arbitrage.router.dataset import load_split
    from arbitrage.servers.factory import ModelSet

    @dataclass
    class P:
        id: str
        problem: str
        answer: str | None = None

    models = ModelSet(draft=ScriptedGenerator("d", ["d0", "d1 \\boxed{1}"]),
                      target=ScriptedGenerator("t", ["t0", "t1 \\boxed{2}"]),
                      prm=ScriptedPRM({"d0": 0.2, "t0": 0.9, "d1 \\boxed{1}": 0.8, "t1 \\boxed{2}": 0.4}))
    problems = [P(f"lab-{i}", f"q{i}") for i in range(40)]
    build_router_data(Config(), problems[:20], tmp_path, models=models, progress=False, shard="a")
    stats = build_router_data(Config(), problems[20:], tmp_path, models=models, progress=False, shard="b")
    rows = {split: load_split(tmp_path, split) for split in ("train", "validation", "test")}
    assert sum(len(r) for r in rows.values()) == 80 and sum(s["rows"] for s in stats.values()) == 80
    ids = {split: {r["problem_id"] for r in split_rows} for split, split_rows in rows.items()}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
    first = next(r for r in rows["train"] if r["step_index"] == 0)
    assert first["label"] == 1 and first["delta"] == pytest.approx(0.7)
