"""Routers that know when they are out of distribution: a feature router records the draft
it was fitted on and is refused beside another one (unless the config allows it), and a
run whose router scores never vary says so once."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from arbitrage.config import Config, ConfigError, Limits, validate_config
from arbitrage.graph.router_watch import ConstantScoreWatch
from arbitrage.router.fit_features import data_identity, fit_feature_router
from arbitrage.servers.factory import ModelSet, load_model
from arbitrage.servers.feature_router import FeatureRouter, model_identity
from arbitrage.solver import Solver
from fakes import ScriptedGenerator, ScriptedRouter

LAB = Path(__file__).resolve().parents[1] / "arbitrage" / "lab" / "weights"


def router_config(draft: dict | None, router_path: str = "lab:router-features", **router) -> Config:
    return validate_config({"models": {"draft": draft, "router": {"path": router_path, "router_kind": "features", **router}}})


def test_the_shipped_feature_router_records_the_lab_draft():
    router = FeatureRouter.load(LAB / "router-features")
    assert router.draft["path"] == "lab:draft"
    assert router.draft["fingerprint"] == model_identity(Config().models.draft)["fingerprint"]
    config = router_config({"path": "lab:draft"})
    assert isinstance(load_model("router", config.models.router, config), FeatureRouter)


def test_a_feature_router_beside_another_draft_is_refused_by_name(tmp_path):
    other = tmp_path / "other-draft"
    shutil.copytree(LAB / "target", other)  # another model: other weights
    config = router_config({"path": str(other)})
    with pytest.raises(ConfigError, match=r"models.router: the feature router was fitted on draft 'lab:draft', but "
                                          r"models.draft is '.*other-draft'.*allow_foreign_router: true"):
        load_model("router", config.models.router, config)


def test_allow_foreign_router_loads_it_with_a_warning(tmp_path, caplog):
    other = tmp_path / "other-draft"
    shutil.copytree(LAB / "target", other)
    config = router_config({"path": str(other)}, allow_foreign_router=True)
    with caplog.at_level(logging.WARNING):
        assert isinstance(load_model("router", config.models.router, config), FeatureRouter)
    assert "fitted on draft 'lab:draft'" in caplog.text and "allow_foreign_router" in caplog.text


def test_a_copy_of_the_draft_is_the_same_model_and_retrained_weights_at_its_path_are_not(tmp_path):
    copy = tmp_path / "draft-copy"
    shutil.copytree(LAB / "draft", copy)
    config = router_config({"path": str(copy)})
    load_model("router", config.models.router, config)  # same fingerprint: accepted
    retrained_router = tmp_path / "router"
    router = FeatureRouter.load(LAB / "router-features")
    router.draft = {**model_identity(config.models.draft), "path": str(copy)}
    router.save(retrained_router)
    (copy / "model.safetensors").write_bytes((LAB / "target" / "model.safetensors").read_bytes())
    config = router_config({"path": str(copy)}, router_path=str(retrained_router))
    with pytest.raises(ConfigError, match="other weights at the same path"):
        load_model("router", config.models.router, config)


def test_a_draft_over_http_matches_by_its_served_name():
    router = FeatureRouter.load(LAB / "router-features")
    router.draft = {"path": "HuggingFaceTB/SmolLM2-135M-Instruct", "model": None, "fingerprint": None}
    served = validate_config({"models": {"draft": {"backend": "openai", "api": "openai", "base_url": "http://127.0.0.1:1",
                                                   "path": "smol", "model": "HuggingFaceTB/SmolLM2-135M-Instruct"}}})
    from arbitrage.servers.feature_router import check_router_draft

    check_router_draft(router, served.models.draft, allow_foreign=False)
    other = served.models.draft.model_copy(update={"model": "llama3"})
    with pytest.raises(ConfigError, match="fitted on draft 'HuggingFaceTB/SmolLM2-135M-Instruct'"):
        check_router_draft(router, other, allow_foreign=False)


def test_a_router_that_records_no_draft_loads_with_a_warning(tmp_path, caplog):
    payload = json.loads((LAB / "router-features" / "feature_router.json").read_text())
    del payload["draft"]
    (tmp_path / "feature_router.json").write_text(json.dumps(payload))
    config = router_config({"path": "lab:draft"}, router_path=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        load_model("router", config.models.router, config)
    assert "records no draft" in caplog.text


def test_training_records_the_draft_of_the_router_data(tmp_path):
    run = tmp_path / "generate"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(Config().model_dump()))
    identity = data_identity(tmp_path)
    assert identity == model_identity(Config().models.draft)
    rows = [{"draft_token_logprobs": [-0.1 * i], "draft_tokens": 3, "previous_steps": [], "label": i % 2} for i in range(8)]
    fit_feature_router(rows, draft=identity).save(tmp_path / "router")
    assert FeatureRouter.load(tmp_path / "router").draft == identity
    other = tmp_path / "generate-b"
    other.mkdir()
    mixed = Config().model_dump()
    mixed["models"]["draft"]["path"] = "lab:target"
    (other / "config.json").write_text(json.dumps(mixed))
    with pytest.raises(ValueError, match="generated with draft 'lab:target'.*fit one router per draft"):
        data_identity(tmp_path)


# ---- constant scores ----


def test_the_watch_warns_once_after_the_window_of_equal_scores(caplog):
    watch = ConstantScoreWatch("the router (x)", window=5)
    with caplog.at_level(logging.WARNING):
        for _ in range(12):
            watch.observe(8.7e-27)
    assert watch.warned and caplog.text.count("never varies") == 1
    assert "the router (x) gave the same score (8.7e-27) on all of the first 5 routed steps" in caplog.text


def test_the_watch_stays_quiet_for_a_router_that_varies(caplog):
    watch = ConstantScoreWatch(window=5)
    with caplog.at_level(logging.WARNING):
        for score in [0.2, 0.2, 0.2, 0.2, 0.2 + 2e-6] + [0.3] * 50:
            watch.observe(score)
    assert watch.decided and not watch.warned and "never varies" not in caplog.text


def test_a_run_whose_router_never_varies_warns_once(caplog):
    """50 routed steps through the real graph: 10 problems of 5 draft steps, one router score."""
    draft = ScriptedGenerator("draft", [f"d{i}" for i in range(4)] + ["done \\boxed{1}"])
    target = ScriptedGenerator("target", ["t"])
    config = Config(policy="arbitrage", threshold=0.5, limits=Limits(max_steps=10))
    solver = Solver(config, ModelSet(draft=draft, target=target, router=ScriptedRouter({})))
    with caplog.at_level(logging.WARNING):
        for index in range(12):
            assert solver.solve(f"p{index}", "q")["error"] is None
    assert caplog.text.count("never varies") == 1
    assert f"models.router.path='{config.models.router.path}'" in caplog.text
    assert solver.context.router_watch.warned
