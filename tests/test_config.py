"""Config validation: every bad value gets one error that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbitrage.config import Config, ConfigError, load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_runs_the_lab_models_offline():
    config = load_config(None)
    assert config.models.draft.path == "lab:draft" and config.models.router.path == "lab:router-prefill"
    assert config.models.router.router_kind == "target_prefill"
    assert config.models == load_config(EXAMPLES / "lab.yaml").models  # the example is the default, spelled out
    assert config.separator == "\n\n" and config.policy.name == "arbitrage" and config.threshold == 0.5
    assert config.models.draft.trust_remote_code is False


def test_swapping_a_model_is_one_entry(tmp_path):
    config = load_config(write(tmp_path, "models:\n  target:\n    path: /models/big\n    device: cuda\n"))
    assert config.models.target.path == "/models/big" and config.models.target.device == "cuda"
    assert config.models.draft.path == "lab:draft"


@pytest.mark.parametrize(
    "text, named",
    [
        ("policy: fastest\n", "policy"),
        ("policy: rsd\nthreshold: 1.5\n", "threshold 1.5 is outside [0.0, 1.0] for policy 'rsd'"),
        ("policy: arbitrage\nthreshold: -0.1\n", "outside [0.0, 1.0]"),
        ("limits:\n  max_steps: 0\n", "limits.max_steps"),
        ("models:\n  draft:\n    backend: openai\n    path: m\n", "base_url is required"),
        ("models:\n  draft:\n    path: m\n    prompt:\n      template: no slot\n", "models.draft.prompt.template"),
        ("models:\n  draft:\n    path: m\n    temprature: 0.5\n", "models.draft.temprature"),
        ("separator: ''\n", "separator"),
    ],
)
def test_bad_values_name_the_field(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("(", r"\(")):
        load_config(write(tmp_path, text))


def test_oracle_threshold_is_a_reward_difference():
    assert Config(policy="oracle", threshold=-0.3).threshold == -0.3
    with pytest.raises(ConfigError, match=r"outside \[-1.0, 1.0\]"):
        Config(policy="oracle").with_overrides(threshold=1.5)


def test_malformed_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(write(tmp_path, "models: [unclosed\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_policy_without_its_model_is_refused(tmp_path):
    config = load_config(write(tmp_path, "policy: rsd\nmodels:\n  prm: null\n"))
    with pytest.raises(ConfigError, match="policy 'rsd' needs models.prm"):
        config.required_models()


def test_a_given_threshold_wins_over_a_policy_default():
    config = Config(policy="rsd", threshold=0.25).with_overrides(policy="arbitrage")
    assert config.threshold == 0.25 and not config.threshold_is_default
    assert Config().with_overrides(policy="rsd", threshold=0.2).threshold == 0.2
    with pytest.raises(ConfigError, match=r"threshold: threshold -0.3 is outside \[0.0, 1.0\] for policy 'rsd'"):
        Config(policy="oracle", threshold=-0.3).with_overrides(policy="rsd")


def test_only_a_default_threshold_follows_the_policy():
    config = Config(policy="rsd")
    assert config.threshold == 0.7 and config.threshold_is_default
    switched = config.with_overrides(policy="arbitrage")
    assert switched.threshold == 0.5 and switched.threshold_is_default
    assert Config(policy="draft_only", threshold=0.3).threshold is None  # takes none
    assert Config.model_validate(config.model_dump()).model_dump() == config.model_dump()


def test_auditing_escalations_requires_the_prm():
    assert "prm" not in Config(policy="arbitrage").required_models()
    assert "prm" in Config(policy="arbitrage", audit_escalations=True).required_models()
    assert "prm" not in Config(policy="draft_only", audit_escalations=True).required_models()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_config_validates(name):
    config = load_config(EXAMPLES / name)
    assert config.required_models()


@pytest.mark.parametrize("name", ["lab.yaml", "lab_neural.yaml"])
def test_lab_router_examples_solve_a_lab_problem(name):
    from arbitrage.eval.datasets import load_problems
    from arbitrage.servers.factory import load_models
    from arbitrage.solver import Solver

    config = load_config(EXAMPLES / name)
    problem = load_problems("test", dataset="lab", limit=1).problems[0]
    record = Solver(config, load_models(config)).solve(problem.id, problem.problem, problem.answer, problem.dataset)
    assert record["error"] is None and record["steps"]
    assert record["counters"]["router_calls"] == len(record["steps"])
    assert all(0.0 <= s["router_score"] <= 1.0 for s in record["steps"])
