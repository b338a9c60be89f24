"""A model server that dies mid-run and comes back within `servers.wait_s` costs the run
nothing: the lab draft and target are served by `arbitrage serve` processes on
127.0.0.1, the target is killed while problems are in flight and restarted on the same
port, and the same run finishes every problem without an error or a rerun.

    .venv/bin/python -m pytest -q -s tests/test_server_outage.py     # -s prints the timings
"""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from arbitrage.config import load_config
from arbitrage.eval.datasets import load_problems
from arbitrage.eval.run import RESULTS_FILE, read_results, run_batch
from arbitrage.servers.factory import load_models
from serve_process import ServeProcess

pytestmark = [pytest.mark.server, pytest.mark.slow]

N_PROBLEMS = 12
LIMITS = {"max_steps": 4, "max_step_tokens": 24, "max_total_tokens": 96}
DOWN_S = 3.0  # how long the target stays dead before it is started again


def _results(output) -> list[dict]:
    return read_results(output / RESULTS_FILE)


def test_target_server_killed_and_restarted_mid_run_loses_nothing(tmp_path):
    served = tmp_path / "served.yaml"
    served.write_text(yaml.safe_dump({"limits": LIMITS}))  # the lab models, in each server
    servers = {role: ServeProcess(served, role) for role in ("draft", "target")}
    try:
        urls = {role: server.url() for role, server in servers.items()}
        http = tmp_path / "http.yaml"
        # Threshold 0: the router escalates every step, so every problem needs the target.
        http.write_text(yaml.safe_dump({
            "policy": "arbitrage",
            "threshold": 0.0,
            "limits": LIMITS,
            "servers": {"wait_s": 60},
            "models": {
                **{role: {"backend": "openai", "api": "arbitrage", "path": f"lab:{role}", "base_url": urls[role]}
                   for role in ("draft", "target")},
                "prm": None,
                "router": {"path": "lab:router-features", "router_kind": "features"},
            },
        }))
        config = load_config(http)
        models = load_models(config)
        problems = load_problems("test", dataset="lab", limit=N_PROBLEMS).problems
        output = tmp_path / "run"
        outcome: dict = {}

        def run() -> None:
            outcome["summary"] = run_batch(config, problems, output, models=models, concurrency=4, progress=False)

        started = time.monotonic()
        runner = threading.Thread(target=run)
        runner.start()
        while len(_results(output)) < 2 and runner.is_alive():
            time.sleep(0.05)
        finished_before_kill = len(_results(output))
        servers["target"].kill()
        killed = time.monotonic()
        assert runner.is_alive() and finished_before_kill < N_PROBLEMS, "the run ended before the kill; raise N_PROBLEMS"

        time.sleep(DOWN_S)
        port = int(urls["target"].rsplit(":", 1)[1])
        servers["target"] = ServeProcess(served, "target", port)
        assert servers["target"].url() == urls["target"]
        serving_again = time.monotonic()
        runner.join(timeout=300)
        ended = time.monotonic()
        assert not runner.is_alive()

        records = _results(output)
        summary = outcome["summary"]
        assert summary["n_problems"] == N_PROBLEMS and summary["n_errors"] == 0
        assert sorted(r["id"] for r in records) == sorted(p.id for p in problems)  # each once, none lost
        assert not [r for r in records if r["error"]]
        watch = models.target.client.watch
        assert watch.polls >= 1 and watch._recoveries >= 1  # the run did wait for the target
        print(
            f"\noutage timings: {finished_before_kill}/{N_PROBLEMS} problems finished at the kill "
            f"({killed - started:.1f} s into the run); target down {serving_again - killed:.1f} s "
            f"(restart took {serving_again - killed - DOWN_S:.1f} s after {DOWN_S:g} s dead); run ended "
            f"{ended - serving_again:.1f} s after the target was serving again, {ended - started:.1f} s in all; "
            f"{watch.polls} health polls, 0 errors"
        )
    finally:
        for server in servers.values():
            server.kill()
