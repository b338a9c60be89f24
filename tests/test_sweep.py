"""Sweeps: the run plan, every pair run with models loaded once, resume, sweep.json, the CLI."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

import arbitrage.servers.factory as factory
from arbitrage.cli import app
from arbitrage.config import Config, ConfigError
from arbitrage.eval.run import read_results
from arbitrage.eval.sweep import PlannedRun, parse_thresholds, plan_runs, read_runs, run_sweep
from sweep_world import World

POLICIES = ["arbitrage", "rsd", "oracle", "draft_only", "target_only"]
THRESHOLDS = {"arbitrage": [0.3, 0.6], "rsd": [0.5, 0.8], "oracle": [-0.1, 0.0]}
EXPECTED_RUNS = [
    "arbitrage_threshold0.30", "arbitrage_threshold0.60", "rsd_threshold0.50", "rsd_threshold0.80",
    "oracle_threshold-0.10", "oracle_threshold0.00", "draft_only", "target_only",
]


def test_parse_thresholds_shared_and_per_policy():
    assert parse_thresholds("0.1, 0.3,0.5") == [0.1, 0.3, 0.5]
    assert parse_thresholds("arbitrage=0.1,0.3;rsd=0.5,0.7;oracle=-0.1,0,0.1") == {
        "arbitrage": [0.1, 0.3], "rsd": [0.5, 0.7], "oracle": [-0.1, 0.0, 0.1]
    }
    assert parse_thresholds(None) is None and parse_thresholds("  ") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.1,abc", "'abc' is not a number"),
        ("0.1,nan", "'nan' is not a finite number"),
        ("fast=0.1", "unknown policy 'fast'"),
        ("rsd=0.1;rsd=0.2", "gives policy 'rsd' twice"),
        ("rsd=0.1;0.2", "part '0.2' has no 'policy='"),
        ("rsd=", "--thresholds rsd=: no thresholds given"),
    ],
)
def test_parse_thresholds_errors_name_the_bad_value(text, message):
    with pytest.raises(ValueError, match=message):
        parse_thresholds(text)


def test_plan_runs_thresholds_only_where_a_policy_takes_one_and_out_of_range_values_skipped():
    runs, notes = plan_runs(POLICIES, [-0.1, 0.0, 0.5])
    assert [r.name for r in runs] == [
        "arbitrage_threshold0.00", "arbitrage_threshold0.50", "rsd_threshold0.00", "rsd_threshold0.50",
        "oracle_threshold-0.10", "oracle_threshold0.00", "oracle_threshold0.50", "draft_only", "target_only",
    ]
    assert "arbitrage: threshold -0.1 is outside [0.0, 1.0]; skipped" in notes
    assert "rsd: threshold -0.1 is outside [0.0, 1.0]; skipped" in notes
    assert not any(n.startswith("oracle") for n in notes)


def test_plan_runs_per_policy_lists_and_defaults():
    runs, notes = plan_runs(["arbitrage", "rsd", "target_only"], {"arbitrage": [0.25, 0.125, 0.25]})
    assert runs == [PlannedRun("arbitrage", 0.25), PlannedRun("arbitrage", 0.125), PlannedRun("rsd", 0.7),
                    PlannedRun("target_only", None)]
    assert [r.name for r in runs][:2] == ["arbitrage_threshold0.25", "arbitrage_threshold0.125"]
    assert "rsd: no thresholds given; runs once at its default 0.7" in notes


@pytest.mark.parametrize(
    "policies, thresholds, message",
    [
        (["rsd"], [1.5, 2.0], r"policy 'rsd': none of the thresholds \[1.5, 2.0\] lies in \[0.0, 1.0\]"),
        (["rsd"], {"oracle": [0.1]}, "values for 'oracle', which is not in the swept policies"),
        (["fastest"], None, "unknown policy 'fastest'"),
        ([], None, "no policies to sweep"),
    ],
)
def test_plan_runs_refuses_a_plan_with_nothing_to_run(policies, thresholds, message):
    with pytest.raises(ValueError, match=message):
        plan_runs(policies, thresholds)


@pytest.fixture
def counted_loads(monkeypatch):
    """Replace the backend loader: every load is counted and gets the world's model."""
    world = World(6, seed=3)
    models = world.models()
    loads: Counter = Counter()

    def load_model(role, model_cfg, config, *, target=None):
        loads[role] += 1
        return getattr(models, role)

    monkeypatch.setattr(factory, "load_model", load_model)
    return world, models, loads


def test_every_pair_runs_with_each_model_loaded_once(counted_loads, tmp_path):
    world, models, loads = counted_loads
    rows = run_sweep(Config(), world.problems, tmp_path, policies=POLICIES, thresholds=THRESHOLDS,
                     progress=False, audit=True)
    assert loads == {"draft": 1, "target": 1, "prm": 1, "router": 1}
    assert [r["name"] for r in rows] == EXPECTED_RUNS
    for row in rows:
        run_dir = tmp_path / row["run_dir"]
        config = json.loads((run_dir / "config.json").read_text())
        assert config["policy"] == row["policy"]
        if row["threshold"] is not None:
            assert config["threshold"] == row["threshold"]
        records = read_results(run_dir / "results.jsonl")
        assert sorted(r["id"] for r in records) == sorted(p.id for p in world.problems)
        assert all(r["policy"] == row["policy"] and r["error"] is None for r in records)
        assert json.loads((run_dir / "summary.json").read_text()) == row["summary"]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["runs"] == rows
    by_name = {r["name"]: r["summary"] for r in rows}
    assert by_name["draft_only"]["target_call_rate"] == 0 and by_name["target_only"]["target_call_rate"] == 1
    # a lower arbitrage threshold escalates at least as often
    assert by_name["arbitrage_threshold0.30"]["escalated_steps"] >= by_name["arbitrage_threshold0.60"]["escalated_steps"]
    # audit: arbitrage and rsd escalations are PRM-scored so wasted ones are counted
    assert by_name["arbitrage_threshold0.30"]["scored_escalations"] == by_name["arbitrage_threshold0.30"]["escalated_steps"] > 0
    assert by_name["arbitrage_threshold0.30"]["prm_calls"] == 0 and by_name["arbitrage_threshold0.30"]["audit_prm_calls"] > 0


def test_models_passed_in_are_used_and_nothing_is_loaded(counted_loads, tmp_path):
    world, models, loads = counted_loads
    run_sweep(Config(), world.problems, tmp_path, policies=["draft_only"], thresholds=None, models=models,
              progress=False)
    assert loads == {} and models.draft.calls > 0


def test_rerun_resumes_and_a_wider_sweep_keeps_earlier_rows(counted_loads, tmp_path):
    world, models, _ = counted_loads
    kwargs = dict(policies=["arbitrage", "draft_only"], thresholds=[0.5], models=models, progress=False)
    first = run_sweep(Config(), world.problems, tmp_path, **kwargs)

    # lose two finished problems of one run, as if it had been interrupted
    results = tmp_path / "arbitrage_threshold0.50" / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-2]) + "\n")
    calls_before = models.draft.calls
    second = run_sweep(Config(), world.problems, tmp_path, **kwargs)
    redone = {r["id"] for r in read_results(results)} - {json.loads(line)["id"] for line in lines[:-2]}
    assert len(redone) == 2
    steps_of_redone = sum(len(r["steps"]) for r in read_results(results) if r["id"] in redone)
    assert models.draft.calls - calls_before == steps_of_redone  # nothing else was solved again
    assert [r["name"] for r in second] == [r["name"] for r in first]
    assert second[0]["summary"]["n_problems"] == len(world.problems)

    run_sweep(Config(), world.problems, tmp_path, policies=["arbitrage"], thresholds=[0.7], models=models,
              progress=False)
    listed = [r["name"] for r in json.loads((tmp_path / "sweep.json").read_text())["runs"]]
    assert listed == ["arbitrage_threshold0.50", "arbitrage_threshold0.70", "draft_only"]
    assert [r["name"] for r in read_runs(tmp_path)] == listed
    (tmp_path / "sweep.json").unlink()  # without the index, run sub-directories are found by their summary
    assert [r["name"] for r in read_runs(tmp_path)] == listed
    assert read_runs(tmp_path / "draft_only")[0]["run_dir"] == "."


def test_a_role_missing_from_the_config_is_named_before_anything_runs(tmp_path):
    config = Config.model_validate({"models": {"prm": None}})
    with pytest.raises(ConfigError, match=r"models.prm \(for oracle, rsd\)"):
        run_sweep(config, World(1).problems, tmp_path, policies=["draft_only", "rsd", "oracle"], thresholds=None,
                  progress=False)
    assert not (tmp_path / "draft_only").exists()


def test_audit_needs_the_prm_even_for_arbitrage_alone(tmp_path):
    config = Config.model_validate({"models": {"prm": None}})
    with pytest.raises(ConfigError, match="models.prm .for the escalation audit."):
        run_sweep(config, World(1).problems, tmp_path, policies=["arbitrage"], thresholds=None, progress=False,
                  audit=True)


def test_sweep_command_end_to_end(counted_loads, tmp_path):
    world, _, loads = counted_loads
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer}) + "\n"
                            for p in world.problems))
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, [
        "sweep", "--data", str(data), "--dataset", "jsonl", "--limit", "4", "--policies", "arbitrage,rsd,target_only",
        "--thresholds", "arbitrage=0.2,0.6;rsd=0.5", "--output", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    assert loads == {"draft": 1, "target": 1, "prm": 1, "router": 1}
    rows = json.loads((out / "sweep.json").read_text())["runs"]
    assert [r["name"] for r in rows] == ["arbitrage_threshold0.20", "arbitrage_threshold0.60", "rsd_threshold0.50", "target_only"]
    assert all(r["summary"]["n_problems"] == 4 for r in rows)
    assert "arbitrage_threshold0.20" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--thresholds", "rsd=0.5;oops"], "part 'oops' has no 'policy='"),
        (["--policies", "rsd,fastest"], "unknown policy 'fastest'"),
        (["--policies", "rsd", "--thresholds", "2,3"], "none of the thresholds [2.0, 3.0] lies in [0.0, 1.0]"),
    ],
)
def test_sweep_command_refuses_a_bad_plan_before_loading_models(counted_loads, tmp_path, args, message):
    _, _, loads = counted_loads
    result = CliRunner().invoke(app, ["sweep", "--output", str(tmp_path / "s"), "--no-progress", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert loads == {}


def test_sweep_command_prints_the_skipped_thresholds(counted_loads, tmp_path):
    world, _, _ = counted_loads
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"problem": p.problem, "answer": p.answer}) + "\n" for p in world.problems))
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, [
        "sweep", "--data", str(data), "--dataset", "jsonl", "--limit", "2", "--policies", "arbitrage,oracle",
        "--thresholds", "-0.1,0.5", "--output", str(out), "--no-progress", "--no-audit",
    ])
    assert result.exit_code == 0, result.output
    assert "arbitrage: threshold -0.1 is outside [0.0, 1.0]; skipped" in " ".join(result.output.split())
    names = [r["name"] for r in json.loads((out / "sweep.json").read_text())["runs"]]
    assert names == ["arbitrage_threshold0.50", "oracle_threshold-0.10", "oracle_threshold0.50"]


def test_a_named_router_runs_as_its_own_curve_beside_the_configs_router(counted_loads, tmp_path, monkeypatch):
    from fakes import ScriptedRouter

    world, models, loads = counted_loads
    escalate_all = ScriptedRouter({})
    escalate_all.scores = type("Always", (dict,), {"get": lambda self, key, default=None: 1.0})()
    plain_load = factory.load_model

    def load_model(role, model_cfg, config, *, target=None):
        if role == "router" and model_cfg.path == "always":
            loads["named router"] += 1
            return escalate_all
        return plain_load(role, model_cfg, config, target=target)

    monkeypatch.setattr(factory, "load_model", load_model)
    monkeypatch.setattr("arbitrage.eval.sweep.load_model", load_model)
    config = Config.model_validate({"routers": {"always": {"path": "always", "router_kind": "features"}}})
    rows = run_sweep(config, world.problems, tmp_path, policies=["arbitrage", "arbitrage@always"],
                     thresholds={"arbitrage": [0.5], "arbitrage@always": [0.5, 0.9]}, progress=False, audit=False)
    assert [r["name"] for r in rows] == ["arbitrage_threshold0.50", "arbitrage@always_threshold0.50",
                                         "arbitrage@always_threshold0.90"]
    assert loads["named router"] == 1 and loads["router"] == 1
    saved = json.loads((tmp_path / "arbitrage@always_threshold0.90" / "config.json").read_text())
    assert saved["models"]["router"]["path"] == "always" and saved["policy"] == "arbitrage"
    by_name = {r["name"]: r for r in read_runs(tmp_path)}
    assert by_name["arbitrage@always_threshold0.90"]["router"] == "always"
    assert by_name["arbitrage_threshold0.50"]["router"] is None
    assert by_name["arbitrage@always_threshold0.90"]["summary"]["target_call_rate"] == 1
    assert by_name["arbitrage_threshold0.50"]["summary"]["target_call_rate"] < 1
    with pytest.raises(ConfigError, match="routers has no 'other'"):
        run_sweep(config, world.problems, tmp_path, policies=["arbitrage@other"], thresholds=None, progress=False)
    with pytest.raises(ValueError, match="only a policy that reads a router"):
        plan_runs(["rsd@always"], None)
    with pytest.raises(ValueError, match="name a router after '@'"):
        plan_runs(["arbitrage@"], None)
