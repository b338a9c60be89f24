"""Router decision vs draft step: wall time side by side in one run.

Solves problems with the arbitrage policy and, at every step, times the draft model's
step and the router's decision on it (both as the graph calls them: same backend, KV
caches as in a real run). Prints the mean of each and their ratio; the design target is
router <= 10% of a draft step. With `--concurrency N` (repeatable) the same problems are
solved again with N in flight: steps and router calls of different problems then share
batched forwards, and each node's time is its wall time in the run, waits included.
A router that runs the target over the draft step (`router_kind: target_prefill`) also
reports how many of its calls paid for that prefill (the rest a cascade accepted).

    python benchmarks/router_cost.py                     # shipped lab models, lab test split
    python benchmarks/router_cost.py --config my.yaml --data problems.jsonl --limit 20
    python benchmarks/router_cost.py --config examples/lab.yaml --limit 40 --concurrency 1 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    parser.add_argument("--data", default="test")
    parser.add_argument("--dataset", default="lab")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--threshold", type=float, default=None, help="router threshold (default: the config's)")
    parser.add_argument("--concurrency", type=int, action="append", default=[],
                        help="problems in flight (repeatable; default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 gives steadier timings)")
    args = parser.parse_args()

    import torch

    from arbitrage.config import load_config
    from arbitrage.eval.datasets import load_problems
    from arbitrage.eval.run import read_results, run_batch
    from arbitrage.servers.factory import load_models

    torch.set_num_threads(args.threads)
    config = load_config(args.config).with_overrides(policy="arbitrage", threshold=args.threshold)
    config = config.model_copy(update={"audit_escalations": False})
    problems = load_problems(args.data, dataset=args.dataset, limit=args.limit).problems
    models = load_models(config)
    results = []
    for concurrency in args.concurrency or [1]:
        with tempfile.TemporaryDirectory() as directory:
            summary = run_batch(config, problems, directory, models=models, concurrency=concurrency, progress=True)
            records = [r for r in read_results(f"{directory}/results.jsonl") if not r.get("error")]
        draft_mean = summary["time_by_node_s"]["draft"] / summary["draft_steps"]
        router_mean = summary["time_by_node_s"]["router"] / summary["router_calls"]
        prefills = summary.get("router_prefill_calls", 0)
        results.append({
            "concurrency": concurrency,
            "problems": len(records),
            "draft_steps": summary["draft_steps"],
            "router_calls": summary["router_calls"],
            "router_prefill_calls": prefills,
            "target_call_rate": summary["target_call_rate"],
            "draft_step_ms": {"mean": 1000 * draft_mean, "median_of_problems": 1000 * statistics.median(
                r["timings_s"]["draft"] / r["counters"]["draft_steps"] for r in records)},
            "router_call_ms": {"mean": 1000 * router_mean, "median_of_problems": 1000 * statistics.median(
                r["timings_s"]["router"] / r["counters"]["router_calls"] for r in records)},
            "router_over_draft_step": router_mean / draft_mean,
        })
    print(json.dumps({"config": args.config or "default (lab models)", "threshold": config.threshold,
                      "runs": results, "target": "router_over_draft_step <= 0.10"}, indent=2))


if __name__ == "__main__":
    main()
