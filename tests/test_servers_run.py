"""Whole runs through `arbitrage serve` processes on loopback: the HTTP config gives the
in-process run's greedy results; killing the target server for good (no wait for it)
keeps finished problems, records the failed ones with their error, and a rerun completes
the rest with nothing duplicated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import tiny_models as tm
from serve_process import ServeProcess
from arbitrage.config import load_config
from arbitrage.eval.run import RESULTS_FILE, read_results, run_batch
from arbitrage.lab.task import generate_problems
from arbitrage.servers.factory import load_models

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROLES = ("draft", "target", "prm", "router")
LIMITS = {"max_steps": 3, "max_step_tokens": 6, "max_total_tokens": 40}


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str


PROBLEMS = [Problem(p.id, p.problem, str(p.answer)) for p in generate_problems(8, seed=5)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    paths = {
        "draft": tm.save_tiny(root / "draft", seed=1),
        "target": tm.save_tiny(root / "target", seed=2),
        "prm": tm.save_tiny(root / "prm", "token", num_labels=1),
        "router": tm.save_tiny(root / "router", "sequence", num_labels=2),
    }
    prompt = {"format": "raw", "template": "Question: {problem}\nAnswer:\n"}
    # tau 0: the router sends every step to the target, so a dead target fails a problem.
    base = {"policy": "arbitrage", "threshold": 0.0, "limits": LIMITS}
    local = {**base, "models": {role: {"path": str(path), "prompt": prompt} for role, path in paths.items()}}
    local["models"]["prm"]["prm_style"] = "skywork"
    local_path = root / "local.yaml"
    local_path.write_text(yaml.safe_dump(local))

    servers = {role: ServeProcess(local_path, role) for role in ROLES}
    try:
        urls = {role: server.url() for role, server in servers.items()}
    except Exception:
        for server in servers.values():
            server.kill()
        raise
    # No wait for a dead server (servers.wait_s 0): these tests kill one and keep it dead;
    # tests/test_server_outage.py restarts one within the wait.
    http = {**base, "servers": {"wait_s": 0}, "models": {}}
    for role in ROLES:
        http["models"][role] = {
            "backend": "openai",
            "api": "arbitrage",
            "path": str(paths[role]),
            "base_url": urls[role],
            "prompt": prompt,
            "max_retries": 1,
            "timeout_s": 30,
        }
    http_path = root / "http.yaml"
    http_path.write_text(yaml.safe_dump(http))
    yield {"root": root, "local": local_path, "http": http_path, "servers": servers, "urls": urls}
    for server in servers.values():
        server.kill()


def _steps(records):
    return {r["id"]: [(s["text"], s["source"]) for s in r["steps"]] for r in records}


def test_http_run_equals_in_process_run(setup, tmp_path):
    local_cfg, http_cfg = load_config(setup["local"]), load_config(setup["http"])
    local = run_batch(local_cfg, PROBLEMS, tmp_path / "local", models=load_models(local_cfg), progress=False)
    remote = run_batch(http_cfg, PROBLEMS, tmp_path / "http", models=load_models(http_cfg), concurrency=4, progress=False)
    local_records = read_results(tmp_path / "local" / RESULTS_FILE)
    remote_records = read_results(tmp_path / "http" / RESULTS_FILE)
    assert not [r for r in remote_records if r["error"]]
    assert _steps(remote_records) == _steps(local_records)
    assert remote["n_problems"] == local["n_problems"] == len(PROBLEMS) and remote["n_errors"] == 0
    assert remote["escalated_steps"] == local["escalated_steps"] > 0


def test_killing_the_target_server_then_rerunning(setup, tmp_path):
    http_cfg = load_config(setup["http"])
    output = tmp_path / "run"
    first_batch, rest = PROBLEMS[:3], PROBLEMS[3:]
    run_batch(http_cfg, first_batch, output, models=load_models(http_cfg), progress=False)
    finished = read_results(output / RESULTS_FILE)
    assert len(finished) == 3 and not [r for r in finished if r["error"]]

    target = setup["servers"]["target"]
    target.kill()
    run_batch(http_cfg, PROBLEMS, output, models=load_models(http_cfg), concurrency=2, progress=False)
    after_kill = read_results(output / RESULTS_FILE)
    by_id = {r["id"]: r for r in after_kill}
    assert [r for r in after_kill if r["id"] in {p.id for p in first_batch}] == finished  # kept as they were
    failed = [by_id[p.id] for p in rest]
    assert all(r["error"] for r in failed)
    assert all(setup["urls"]["target"] in r["error"] and "was unreachable for 0 s" in r["error"] for r in failed)

    port = int(setup["urls"]["target"].rsplit(":", 1)[1])
    setup["servers"]["target"] = restarted = ServeProcess(setup["local"], "target", port)
    assert restarted.url() == setup["urls"]["target"]
    run_batch(http_cfg, PROBLEMS, output, models=load_models(http_cfg), concurrency=2, progress=False)
    final = read_results(output / RESULTS_FILE)
    ids = [r["id"] for r in final]
    assert sorted(ids) == sorted(p.id for p in PROBLEMS)  # each problem exactly once
    assert not [r for r in final if r["error"]]
    assert [r for r in final if r["id"] in {p.id for p in first_batch}] == finished
    summary = json.loads((output / "summary.json").read_text())
    assert summary["n_problems"] == len(PROBLEMS) and summary["n_errors"] == 0
