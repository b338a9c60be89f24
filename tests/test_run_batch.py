"""Batch runs: results written as problems finish, resume, errors kept, summary fields."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from arbitrage.config import Config
from arbitrage.eval.run import RunDirectoryError, read_results, run_batch
from arbitrage.servers.factory import ModelSet
from arbitrage.solver import Solver
from fakes import ScriptedGenerator, ScriptedRouter


@dataclass
class P:
    id: str
    problem: str
    answer: str | None


PROBLEMS = [P(f"p{i}", f"problem {i}", "3") for i in range(5)]


def run(config, problems, directory, models, **kwargs):
    solver = Solver(config, models, grader=lambda predicted, gold, dataset: predicted == gold)
    return run_batch(config, problems, directory, solver=solver, progress=False, **kwargs)


def models(fail_on: set[str] = frozenset(), interrupt_on: str | None = None):
    class Target(ScriptedGenerator):
        def step(self, problem, steps, **kwargs):
            if problem in fail_on:
                raise ConnectionError("target down")
            if problem == interrupt_on:
                raise KeyboardInterrupt
            return super().step(problem, steps, **kwargs)

    return ModelSet(
        draft=ScriptedGenerator("d", ["d0", "d1 \\boxed{3}"]),
        target=Target("t", ["t0", "t1 \\boxed{4}"]),
        router=ScriptedRouter({"d0": 0.9}),
    )


def test_results_and_summary_are_written(tmp_path):
    summary = run(Config(policy="arbitrage", threshold=0.5), PROBLEMS, tmp_path, models())
    records = read_results(tmp_path / "results.jsonl")
    assert [r["id"] for r in records] == [p.id for p in PROBLEMS]
    assert all(r["steps"][0]["source"] == "target" and r["steps"][1]["source"] == "draft" for r in records)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == summary
    for key in ("n_problems", "n_errors", "accuracy", "acceptance_rate", "target_call_rate", "draft_tokens",
                "target_tokens", "discarded_draft_tokens", "router_calls", "prm_calls", "target_calls",
                "wasted_escalations", "latency_s", "wall_s", "time_by_node_s"):
        assert key in summary
    assert summary["n_problems"] == 5 and summary["n_errors"] == 0
    assert summary["accuracy"] == 1.0
    assert summary["acceptance_rate"] == pytest.approx(0.5)  # d0 rejected, d1 kept
    assert summary["target_call_rate"] == pytest.approx(0.5)
    assert summary["router_calls"] == 10 and summary["target_calls"] == 5 and summary["prm_calls"] == 0
    assert summary["wasted_escalations"] is None  # nothing scored both steps
    assert set(summary["time_by_node_s"]) >= {"draft", "router", "target", "commit", "graph_overhead"}
    assert summary["latency_s"]["p50"] <= summary["latency_s"]["p95"]


def test_failing_problems_are_recorded_and_retried_on_rerun_without_duplicates(tmp_path):
    config = Config(policy="arbitrage", threshold=0.5)
    summary = run(config, PROBLEMS, tmp_path, models(fail_on={"problem 1", "problem 3"}))
    assert summary["n_errors"] == 2
    records = {r["id"]: r for r in read_results(tmp_path / "results.jsonl")}
    assert records["p1"]["error"] == "ConnectionError: target down"
    assert summary["accuracy"] == pytest.approx(3 / 5)  # an error counts as a wrong answer

    fresh = models()
    summary = run(config, PROBLEMS, tmp_path, fresh)
    assert summary["n_errors"] == 0 and summary["n_problems"] == 5
    assert len(fresh.draft.calls) == 4  # only p1 and p3 were solved again (2 steps each)
    ids = [r["id"] for r in read_results(tmp_path / "results.jsonl")]
    assert sorted(ids) == [p.id for p in PROBLEMS]


def test_interrupt_keeps_finished_problems_and_rerun_completes_the_rest(tmp_path):
    config = Config(policy="arbitrage", threshold=0.5)
    with pytest.raises(KeyboardInterrupt):
        run(config, PROBLEMS, tmp_path, models(interrupt_on="problem 2"))
    finished = [r["id"] for r in read_results(tmp_path / "results.jsonl")]
    # A problem the worker had already started when the interrupt came is kept as well.
    assert finished[:2] == ["p0", "p1"] and "p2" not in finished
    assert json.loads((tmp_path / "summary.json").read_text())["n_problems"] == len(finished)

    summary = run(config, PROBLEMS, tmp_path, models())
    ids = [r["id"] for r in read_results(tmp_path / "results.jsonl")]
    assert sorted(ids) == [p.id for p in PROBLEMS] and summary["n_problems"] == 5


def test_torn_last_line_is_ignored_on_resume(tmp_path):
    config = Config(policy="draft_only")
    run(config, PROBLEMS[:2], tmp_path, models())
    with (tmp_path / "results.jsonl").open("a") as handle:
        handle.write('{"id": "p2", "trunc')
    summary = run(config, PROBLEMS, tmp_path, models())
    assert summary["n_problems"] == 5 and summary["n_errors"] == 0


def test_concurrent_run_writes_every_problem_once(tmp_path):
    summary = run(Config(policy="draft_only"), PROBLEMS, tmp_path, models(), concurrency=4)
    ids = [r["id"] for r in read_results(tmp_path / "results.jsonl")]
    assert sorted(ids) == sorted(p.id for p in PROBLEMS) and summary["n_problems"] == 5


def test_output_dir_of_another_run_is_refused(tmp_path):
    run(Config(policy="draft_only"), PROBLEMS[:1], tmp_path, models())
    with pytest.raises(RunDirectoryError, match="policy=draft_only"):
        run(Config(policy="arbitrage"), PROBLEMS[:1], tmp_path, models())


def test_duplicate_problem_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'p0' appears more than once"):
        run_batch(Config(policy="draft_only"), [PROBLEMS[0], PROBLEMS[0]], tmp_path, models=models(), progress=False)


def _local_draft_config(checkpoint_dir) -> Config:
    return Config.model_validate({"policy": "draft_only", "models": {"draft": {"path": str(checkpoint_dir)}}})


def test_resume_with_other_weights_at_the_same_path_is_refused(tmp_path):
    checkpoint = tmp_path / "draft"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 16_384)  # 4 MiB: both sampled ends and the middle
    config, out = _local_draft_config(checkpoint), tmp_path / "run"
    run(config, PROBLEMS[:2], out, models())
    assert set(json.loads((out / "checkpoints.json").read_text())) == {"draft"}

    summary = run(config, PROBLEMS[:3], out, models())  # same files: resumes
    assert summary["n_problems"] == 3

    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # retrained weights saved over the old ones: same path, same size
    weights.write_bytes(bytes(data))
    with pytest.raises(RunDirectoryError, match=r"models\.draft\.path=.*files changed"):
        run(config, PROBLEMS[:4], out, models())
    assert len(read_results(out / "results.jsonl")) == 3


def test_fingerprints_skip_roles_the_policy_does_not_call_and_http_models(tmp_path):
    from arbitrage.eval.checkpoint_fingerprint import run_checkpoints

    http = {"backend": "openai", "path": "target", "base_url": "http://127.0.0.1:1/v1"}
    config = Config.model_validate({"policy": "rsd", "models": {"target": http}})
    assert set(run_checkpoints(config)) == {"draft", "prm"}  # lab weights on disk; no router in RSD


def test_progress_bar_leaves_stdout_to_the_caller(tmp_path, capsys):
    """Commands print JSON on stdout; the progress bar must not end up inside it."""
    solver = Solver(Config(policy="arbitrage", threshold=0.5), models(),
                    grader=lambda predicted, gold, dataset: predicted == gold)
    run_batch(Config(policy="arbitrage", threshold=0.5), PROBLEMS, tmp_path, solver=solver, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "5/5" in captured.err
