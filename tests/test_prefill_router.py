"""The target-verified router: features from the target's prefill, the cascade (steps the
feature router scores below cascade_low make no prefill call, and are counted), training
and loading on a tiny dataset of lab steps with the real lab target."""

from __future__ import annotations

import json
import math
import random

import pytest
from typer.testing import CliRunner

from arbitrage.cli import app
from arbitrage.config import Config, ConfigError, ModelConfig, ModelsConfig, validate_config
from arbitrage.eval.metrics import summarize
from arbitrage.lab.checker import check_step
from arbitrage.lab.task import generate_problems
from arbitrage.protocols import AnnotatedStep, RouterQuery, StepOutput, router_score
from arbitrage.servers.feature_router import FeatureRouter, model_identity
from arbitrage.servers.prefill_router import (
    FEATURES, PrefillModel, PrefillRouter, PrefillSignals, features_of, load_prefill_weights, row_ended_on_separator,
    split_scores,
)
from arbitrage.servers.factory import ModelSet, load_models
from arbitrage.solver import Solver
from fakes import ScriptedGenerator

DRAFT = ["d0 sure", "d1 unsure", "d2 so \\boxed{3}"]
TARGET = ["t0", "t1", "t2 so \\boxed{3}"]


class CountingTarget(ScriptedGenerator):
    """A scripted target that also scores continuations: -3 per character of a step that
    holds 'unsure', -0.01 otherwise; records every call."""

    def __init__(self):
        super().__init__("target", TARGET)
        self.scored: list[tuple[list[str], str, str | None]] = []

    def score_continuation(self, problem, steps, text, *, session=None):
        self.scored.append((list(steps), text, session))
        per_token = -3.0 if "unsure" in text else -0.01
        return [per_token] * len(text) + [-0.05]


def logistic(features, coef, intercept=0.0):
    return PrefillModel(features, [0.0] * len(features), [1.0] * len(features), coef, intercept)


def draft_confidence_router():
    """A cascade feature router: the lower the draft's mean logprob, the higher the score."""
    return FeatureRouter(["logprob_mean"], [0.0], [1.0], [-4.0], -2.0)


def query(text, logprobs, finish="separator", session="p1"):
    return RouterQuery("How many?", [AnnotatedStep("d0", "draft")], StepOutput(text, len(logprobs), finish, logprobs),
                       session=session)


def test_signals_split_the_step_from_its_separator_and_features_follow_the_definitions():
    tokens, end = split_scores([-0.1, -3.0, -0.2, -0.7], ended_on_separator=True)
    assert tokens == [-0.1, -3.0, -0.2] and end == -0.7
    assert split_scores([-0.1, -0.7], ended_on_separator=False) == ([-0.1], 0.0)
    draft = query("abc", [-0.1, -0.1, -0.5, -0.01, -0.01]).draft
    from arbitrage.servers.feature_router import query_signals

    signals = PrefillSignals(query_signals(query("abc", [-0.1, -0.1, -0.5, -0.01, -0.01])), tokens, end)
    values = dict(zip(FEATURES, features_of(signals)))
    assert values["target_logprob_mean"] == pytest.approx(-3.3 / 3)
    assert values["target_logprob_min"] == -3.0 and values["target_logprob_sum"] == pytest.approx(-3.3)
    assert values["target_unlikely_tokens"] == pytest.approx(math.log1p(1))  # -3.0 < log(0.1)
    assert values["target_end_logprob"] == -0.7
    assert values["gap_max"] == pytest.approx(-0.1 + 3.0) and values["gap_mean"] == pytest.approx((0 + 2.9 - 0.3) / 3)
    assert values["draft_logprob_min"] == -0.5 and draft.num_tokens == 5


def test_rows_without_a_recorded_finish_end_on_the_separator_unless_they_hold_the_answer():
    assert row_ended_on_separator({"draft_step": "a: 1 + 2 = 3."})
    assert not row_ended_on_separator({"draft_step": "a: 1 + 2 = 3. The answer is \\boxed{3}."})
    assert not row_ended_on_separator({"draft_step": "x", "draft_finish_reason": "length"})


def test_the_cascade_accepts_confident_steps_without_a_prefill_and_prefills_the_rest():
    target = CountingTarget()
    model = logistic(["target_logprob_mean"], [-2.0], -1.0)
    router = PrefillRouter(model, target, "\n\n", cascade=draft_confidence_router(), cascade_low=0.3)
    confident, doubtful = query("sure", [-0.01] * 4), query("unsure", [-1.0] * 6)
    assert draft_confidence_router().score(confident) < 0.3 < draft_confidence_router().score(doubtful)
    accepted = router_score(router, confident)
    assert (accepted.score, accepted.prefill_calls) == (0.0, 0) and target.scored == []
    checked = router_score(router, doubtful)
    assert checked.prefill_calls == 1 and checked.score > 0.99
    assert target.scored == [(["d0"], "unsure", "p1")]  # the problem's session: the target's cache
    # Without a cascade every step pays the prefill.
    plain = PrefillRouter(model, target, "\n\n")
    assert router_score(plain, confident).prefill_calls == 1 and len(target.scored) == 2
    with pytest.raises(ValueError, match="hold no cascade"):
        PrefillRouter(model, target, "\n\n", cascade_low=0.3)
    with pytest.raises(ValueError, match="cannot"):
        PrefillRouter(model, object(), "\n\n")


def test_the_graph_counts_prefill_calls_and_skips_them_under_the_cascade():
    draft = ScriptedGenerator("draft", DRAFT)
    draft_logprobs = {"d0 sure": -0.01, "d1 unsure": -1.0, DRAFT[2]: -0.01}

    class Draft(ScriptedGenerator):
        def step(self, problem, steps, **kwargs):
            out = super().step(problem, steps, **kwargs)
            return StepOutput(out.text, out.num_tokens, out.finish_reason, [draft_logprobs[out.text]] * out.num_tokens)

    records = {}
    for cascade_low in (None, 0.3):
        draft, target = Draft("draft", DRAFT), CountingTarget()
        router = PrefillRouter(logistic(["target_logprob_mean"], [-2.0], -1.0), target, "\n\n",
                               cascade=draft_confidence_router(), cascade_low=cascade_low)
        solver = Solver(Config(policy="arbitrage", threshold=0.5), ModelSet(draft=draft, target=target, router=router),
                        grader=lambda predicted, gold, dataset: predicted == gold)
        record = solver.solve("p1", "How many?", "3")
        assert record["error"] is None, record["error"]
        records[cascade_low] = (record, target)
    plain, plain_target = records[None]
    cascaded, cascaded_target = records[0.3]
    for record in (plain, cascaded):  # the same decisions: only "d1 unsure" is escalated
        assert [(s["text"], s["source"]) for s in record["steps"]] == [("d0 sure", "draft"), ("t1", "target"),
                                                                        (DRAFT[2], "draft")]
    assert plain["counters"]["router_prefill_calls"] == 3 == len(plain_target.scored)
    assert cascaded["counters"]["router_prefill_calls"] == 1 == len(cascaded_target.scored)
    assert cascaded["counters"]["router_calls"] == 3
    assert summarize([cascaded])["router_prefill_calls"] == 1 and summarize([plain])["router_prefill_calls"] == 3


def test_config_keeps_cascade_low_to_the_prefill_router_and_the_router_in_process():
    with pytest.raises(ConfigError, match="cascade_low applies to router_kind 'target_prefill'"):
        validate_config({"models": {"router": {"path": "lab:router-features", "router_kind": "features",
                                                "cascade_low": 0.2}}})
    with pytest.raises(ConfigError, match="runs in-process"):
        validate_config({"models": {"router": {"path": "x", "router_kind": "target_prefill", "backend": "openai",
                                                "base_url": "http://127.0.0.1:1"}}})
    with pytest.raises(ConfigError, match="less than or equal to 1"):
        validate_config({"models": {"router": {"path": "x", "router_kind": "target_prefill", "cascade_low": 1.5}}})


# --- training and loading on a tiny dataset of lab steps ---------------------------------------


def lab_rows(count: int, seed: int) -> list[dict]:
    """For each lab problem, its second step as the reference wrote it (right) and with the
    result changed (wrong); the draft's logprobs are the lab draft's own of that text."""
    rng = random.Random(seed)
    rows = []
    for problem in generate_problems(count, seed=seed):
        previous, step = list(problem.steps[:1]), problem.steps[1]
        head, _, tail = step.rpartition("= ")
        number = tail.rstrip(".").split(".")[0]
        wrong = f"{head}= {int(number) + rng.choice([1, 2, 10])}."
        for text in (step, wrong):
            bad = not check_step(problem.problem, previous, text).correct
            rows.append({
                "problem_id": problem.id, "problem": problem.problem, "step_index": 1,
                "previous_steps": [{"text": t, "source": "draft"} for t in previous], "draft_step": text,
                "draft_finish_reason": "separator", "draft_score": 0.5, "target_score": 0.5 + 0.4 * bad,
                "delta": 0.4 * bad, "label": int(bad),
            })
    return rows


def with_draft_logprobs(rows: list[dict]) -> list[dict]:
    draft = load_models(Config(), roles=("draft",)).draft
    for row in rows:
        values = draft.score_continuation(row["problem"], [s["text"] for s in row["previous_steps"]], row["draft_step"])
        row["draft_token_logprobs"] = values[:-1] + [values[-1]]
        row["draft_tokens"] = len(values)
    return rows


@pytest.mark.slow
def test_train_then_load_through_the_config_and_route_wrong_lab_steps_up(tmp_path):
    from sklearn.metrics import roc_auc_score

    data = tmp_path / "data"
    data.mkdir()
    splits = {"train": lab_rows(24, seed=11), "validation": lab_rows(8, seed=12), "test": lab_rows(16, seed=13)}
    for name, rows in splits.items():
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in with_draft_logprobs(rows)))
    assert sum(r["label"] for r in splits["train"]) == 24  # every changed result is wrong
    output = tmp_path / "router"
    result = CliRunner().invoke(app, ["router", "train", "--kind", "target_prefill", "--label", "checker",
                                      "--data", str(data), "--output", str(output),
                                      "--cascade", "lab:router-features"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[result.output.index("{"):])["validation"]
    assert metrics["auroc_wrong_step"] > 0.9
    model, cascade, label, fitted_on = load_prefill_weights(output)
    assert label == "checker" and model.features == FEATURES
    assert fitted_on.target == model_identity(Config().models.target) and fitted_on.draft is None  # no generate/ run
    assert cascade.to_json() == FeatureRouter.load("arbitrage/lab/weights/router-features").to_json()

    config = Config(models=ModelsConfig(router=ModelConfig(path=str(output), router_kind="target_prefill")))
    models = load_models(config)
    assert isinstance(models.router, PrefillRouter) and models.router.target is models.target
    rows = splits["test"]
    scores = [models.router.score(RouterQuery(
        r["problem"], [AnnotatedStep(s["text"], "draft") for s in r["previous_steps"]],
        StepOutput(r["draft_step"], r["draft_tokens"], "separator", r["draft_token_logprobs"]), session=r["problem_id"],
    )) for r in rows]
    assert roc_auc_score([r["label"] for r in rows], scores) > 0.9
    # The router scored through the target's session cache of each problem.
    assert models.target.cached_tokens(rows[-1]["problem_id"]) > 0

    eval_result = CliRunner().invoke(app, ["router", "eval", "--router", str(output), "--data", str(data), "--json"])
    assert eval_result.exit_code == 0, eval_result.output
    assert json.loads(eval_result.output)["auroc"] > 0.9


def test_the_shipped_router_refuses_another_target_unless_allowed(caplog):
    def models_with(target_path, **router):
        config = validate_config({"models": {"target": {"path": target_path},
                                             "router": {"path": "lab:router-prefill", "router_kind": "target_prefill",
                                                        **router}}})
        return load_models(config, roles=("target", "router"))

    assert isinstance(models_with("lab:target").router, PrefillRouter)
    with pytest.raises(ConfigError, match=r"models.router: the target-prefill router was fitted on target "
                                          r"'lab:target', but models.target is 'lab:draft'.*allow_foreign_router"):
        models_with("lab:draft")
    with caplog.at_level("WARNING"):
        assert isinstance(models_with("lab:draft", allow_foreign_router=True).router, PrefillRouter)
    assert "allowed by allow_foreign_router" in caplog.text


def test_under_batching_the_router_queues_its_prefills_with_the_targets_steps(tmp_path):
    import tiny_models as tm
    from arbitrage.servers.inprocess_batching import BatchingGenerator, batching
    from arbitrage.servers.transformers_backend import load_generator

    target = load_generator(ModelConfig(path=str(tm.save_tiny(tmp_path / "lm", seed=1))), Config())
    router = PrefillRouter(logistic(["target_logprob_mean"], [-1.0]), target, "\n\n")
    with batching(ModelSet(target=target, router=router)) as models:
        assert isinstance(models.target, BatchingGenerator)
        assert models.router.target is models.target and router.target is target
        before = sum(models.target.batcher.batch_sizes)
        result = router_score(models.router, query("a step", [-0.1] * 8))
        assert result.prefill_calls == 1 and sum(models.target.batcher.batch_sizes) == before + 1


def test_the_checker_label_on_a_problem_the_lab_checker_cannot_read_says_to_use_delta():
    from arbitrage.router.fit_prefill import row_label

    row = {"problem_id": "gsm-1", "problem": "What is the capital of France?", "previous_steps": [],
           "draft_step": "Paris.", "label": 1}
    assert row_label(row, "delta") == 1
    with pytest.raises(ValueError, match="needs lab problems.*'gsm-1'.*label 'delta'"):
        row_label(row, "checker")
    with pytest.raises(ValueError, match="label must be one of delta, checker"):
        row_label(row, "votes")
