"""The pipeline server's throughput and latency at 1 and at 16 concurrent clients,
measured side by side in one run on the lab test split: one `arbitrage serve --role
pipeline` process (torch threads 1), clients on threads of this process sending
`/v1/chat/completions` with the official openai client; the same problems at both.

    python benchmarks/pipeline_server_throughput.py                  # 32 lab problems, the lab config
    python benchmarks/pipeline_server_throughput.py --limit 48 --config examples/lab.yaml --json runs/bench/pipeline.json

Prints requests/s, mean latency and the mean batch each model saw at each concurrency, and
the throughput ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_server(config: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "arbitrage.cli", "serve", "--role", "pipeline", "--config", str(config), "--port", "0",
         "--threads", "1"],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = process.stdout.readline()
    if " on http://" not in line:
        process.kill()
        raise RuntimeError(f"the pipeline server did not start; see {log_path}")
    return process, line.rsplit(" on ", 1)[1].strip()


def batch_counts(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/v1/arbitrage/stats", timeout=30).json()


def measure(client, url: str, problems: list[str], concurrency: int) -> dict:
    def ask(problem: str) -> float:
        start = time.perf_counter()
        client.chat.completions.create(model="arbitrage", messages=[{"role": "user", "content": problem}])
        return time.perf_counter() - start

    before = batch_counts(url)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(ask, problems))
    wall = time.perf_counter() - start
    after = batch_counts(url)
    mean_batch = {}
    for role in ("draft", "target"):
        batches = after[role]["batches"] - before[role]["batches"]
        mean_batch[role] = (after[role]["requests"] - before[role]["requests"]) / batches if batches else 0.0
    return {"concurrency": concurrency, "requests": len(problems), "wall_s": wall,
            "requests_per_s": len(problems) / wall, "mean_latency_s": statistics.mean(latencies),
            "p95_latency_s": sorted(latencies)[int(0.95 * (len(latencies) - 1))], "mean_batch": mean_batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "lab.yaml")
    parser.add_argument("--limit", type=int, default=32, help="lab test problems sent at each concurrency")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.limit < 1:
        parser.error("--limit must be at least 1")

    from openai import OpenAI

    from arbitrage.eval.datasets import load_problems

    problems = [p.problem for p in load_problems("test", dataset="lab", limit=args.limit).problems]
    with tempfile.TemporaryDirectory() as scratch:
        process, url = start_server(args.config, Path(scratch) / "server.log")
        try:
            client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
            measure(client, url, problems[:2], 2)  # first-call costs out of the timings
            rows = [measure(client, url, problems, concurrency) for concurrency in (1, 16)]
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    for row in rows:
        print(f"concurrency {row['concurrency']:2d}: {row['requests_per_s']:.2f} requests/s, "
              f"mean latency {row['mean_latency_s']:.2f} s (p95 {row['p95_latency_s']:.2f} s), "
              f"{row['requests']} requests in {row['wall_s']:.1f} s; mean batch: draft "
              f"{row['mean_batch']['draft']:.1f}, target {row['mean_batch']['target']:.1f}")
    ratio = rows[1]["requests_per_s"] / rows[0]["requests_per_s"]
    print(f"throughput at 16 clients / at 1 client: {ratio:.2f}x")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "throughput_ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
