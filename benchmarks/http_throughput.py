"""HTTP serving figures, measured side by side in one run on the lab test split:

1. throughput with --concurrency 16 against local `arbitrage serve` processes, over
   throughput with --concurrency 1 against the same servers (target: >= 2.5x);
2. the HTTP path's time per committed step at concurrency 1, over the in-process
   run's (target: <= 15% more).

    python benchmarks/http_throughput.py                     # the shipped lab models, the config's policy
                                                             # (its target-prefill router in-process)
    python benchmarks/http_throughput.py --policy rsd --limit 32 --json runs/bench/http.json

Each role's server is its own process (`python -m arbitrage.servers.cli serve`) on a free
127.0.0.1 port; all are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Served:
    def __init__(self, config_path: Path, role: str, log_dir: Path, threads: int | None):
        self.role = role
        self.log = open(log_dir / f"{role}.log", "w")
        extra = ["--threads", str(threads)] if threads else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arbitrage.servers.cli", "serve", "--config", str(config_path), "--role", role, "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def url(self) -> str:
        line = self.process.stdout.readline()
        if " on http://" not in line:
            raise RuntimeError(f"the {self.role} server did not start; see {self.log.name}")
        return line.rsplit(" on ", 1)[1].strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def http_config(config: dict, urls: dict[str, str]) -> dict:
    out = json.loads(json.dumps(config))
    for role, url in urls.items():
        # A batch of 16 long steps on a busy 2-core machine can take minutes.
        out["models"][role].update({"backend": "openai", "api": "arbitrage", "base_url": url, "timeout_s": 1800})
    return out


def load(config_dict: dict):
    from arbitrage.config import validate_config
    from arbitrage.servers.factory import load_models

    config = validate_config(config_dict)
    return config, load_models(config)


def timed_run(config_dict: dict, problems, output: Path, concurrency: int) -> dict:
    from arbitrage.eval.run import run_batch

    config, models = load(config_dict)
    start = time.perf_counter()
    summary = run_batch(config, problems, output, models=models, concurrency=concurrency, progress=False)
    wall = time.perf_counter() - start
    if summary["n_errors"]:
        raise RuntimeError(f"{summary['n_errors']} problems failed in {output}; see results.jsonl")
    return {"wall_s": wall, "steps": summary["steps"], "problems": summary["n_problems"], "s_per_step": wall / max(1, summary["steps"])}


def interleaved_overhead(local_dict: dict, remote_dict: dict, problems) -> dict:
    """Each problem solved in-process then over HTTP, alternately, so load from elsewhere
    on the machine hits both paths alike; per committed step, summed over problems."""
    from arbitrage.solver import Solver

    local, remote = Solver(*load(local_dict)), Solver(*load(remote_dict))
    totals = {"in_process": [0.0, 0], "http": [0.0, 0]}
    identical = 0
    for problem in problems:
        records = {}
        for name, solver in (("in_process", local), ("http", remote)):
            record = solver.solve(problem.id, problem.problem, problem.answer, problem.dataset)
            if record["error"]:
                raise RuntimeError(f"{name}: problem {problem.id} failed: {record['error']}")
            totals[name][0] += record["latency_s"]
            totals[name][1] += len(record["steps"])
            records[name] = [step["text"] for step in record["steps"]]
        identical += records["in_process"] == records["http"]
    per_step = {name: seconds / max(1, steps) for name, (seconds, steps) in totals.items()}
    return {
        "in_process_s_per_step": per_step["in_process"],
        "http_s_per_step": per_step["http"],
        "steps": totals["http"][1],
        "identical_solutions": identical,
        "overhead": per_step["http"] / per_step["in_process"] - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "examples" / "lab.yaml"), help="in-process config to serve")
    parser.add_argument("--policy", help="override the config's policy (rsd needs no router)")
    parser.add_argument("--limit", type=int, default=32, help="lab test problems")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, help="torch threads per process (servers and in-process run)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from arbitrage.config import validate_config
    from arbitrage.eval.datasets import load_problems

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    problems = load_problems("test", dataset="lab", limit=args.limit).problems
    work = Path(tempfile.mkdtemp(prefix="http_bench_"))
    config = yaml.safe_load(Path(args.config).read_text())
    if args.policy:
        config["policy"], config["threshold"] = args.policy, None
    config_path = work / "serve.yaml"
    config_path.write_text(yaml.safe_dump(config))

    # A feature or target-prefill router runs in the run's process (the latter reading the
    # served target); the other roles are served.
    roles = [role for role, model in validate_config(config).required_models().items()
             if not (role == "router" and model.router_kind != "classifier")]
    servers = {role: Served(config_path, role, work, args.threads) for role in roles}
    try:
        urls = {role: server.url() for role, server in servers.items()}
        remote = http_config(config, urls)
        overhead = interleaved_overhead(config, remote, problems)
        http_1 = timed_run(remote, problems, work / "http_c1", 1)
        http_n = timed_run(remote, problems, work / f"http_c{args.concurrency}", args.concurrency)
    finally:
        for server in servers.values():
            server.stop()

    speedup = http_1["wall_s"] / http_n["wall_s"]
    figures = {
        "problems": len(problems),
        "policy": config.get("policy", "arbitrage"),
        "c1_per_step": overhead,
        "http_c1": http_1,
        f"http_c{args.concurrency}": http_n,
        "throughput_ratio": speedup,
        "http_overhead_per_step": overhead["overhead"],
    }
    print(f"{len(problems)} lab problems, policy {figures['policy']}, roles {', '.join(roles)}, runs in {work}")
    print(f"c=1, interleaved: in-process {1000 * overhead['in_process_s_per_step']:.1f} ms/step, "
          f"HTTP {1000 * overhead['http_s_per_step']:.1f} ms/step over {overhead['steps']} steps; "
          f"{overhead['identical_solutions']}/{len(problems)} solutions identical")
    for name, run in (("HTTP c=1", http_1), (f"HTTP c={args.concurrency}", http_n)):
        print(f"{name:>10}: {run['wall_s']:7.2f} s  {run['steps']:5d} steps  {run['problems'] / run['wall_s']:6.3f} problems/s")
    print(f"throughput c={args.concurrency} / c=1: {speedup:.2f}x  (target >= 2.5x)")
    print(f"HTTP overhead per step at c=1: {100 * overhead['overhead']:+.1f}%  (target <= 15%)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
