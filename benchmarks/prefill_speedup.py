"""Target-only against Arbitrage with the target-prefill router (and the feature router),
problem by problem: each problem is solved by every run in turn, the order rotating from
one problem to the next, so a machine whose load drifts over minutes (a shared one)
slows every run alike. Printed per run: accuracy, target-call rate, router prefills,
mean wall time and mean CPU time of the solving thread per problem (one torch thread, so
the model's work runs in that thread), and both as a fraction of target-only's.

    python benchmarks/prefill_speedup.py --limit 100 --prefill 0.5 --prefill 0.3 --features 0.12
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="examples/lab.yaml",
                        help="its models.router is the prefill router, routers.features the feature router")
    parser.add_argument("--limit", type=int, default=100, help="lab test problems")
    parser.add_argument("--prefill", type=float, action="append", default=[], help="prefill router threshold (repeatable)")
    parser.add_argument("--features", type=float, action="append", default=[], help="feature router threshold (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from arbitrage.config import load_config
    from arbitrage.eval.datasets import load_problems
    from arbitrage.eval.grading import grade
    from arbitrage.servers.factory import load_model, load_models
    from arbitrage.solver import Solver

    torch.set_num_threads(args.threads)
    base = load_config(args.config).with_overrides(policy="arbitrage", threshold=0.5)
    base = base.model_copy(update={"audit_escalations": False})
    models = load_models(base, roles=("draft", "target", "router"))
    runs = [("target_only", Solver(base.with_overrides(policy="target_only"), models, grader=grade))]
    runs += [(f"prefill router, threshold {t}", Solver(base.with_overrides(threshold=t), models, grader=grade))
             for t in args.prefill]
    if args.features:
        features_cfg = base.routers.get("features")
        if features_cfg is None:
            parser.error(f"{args.config} names no routers.features")
        feature_models = dataclasses.replace(models, router=load_model("router", features_cfg, base))
        runs += [(f"feature router, threshold {t}", Solver(base.with_overrides(threshold=t), feature_models, grader=grade))
                 for t in args.features]
    problems = load_problems("test", dataset="lab", limit=args.limit).problems
    totals = {name: {"wall": 0.0, "cpu": 0.0, "correct": 0, "steps": 0, "escalated": 0, "prefills": 0} for name, _ in runs}
    for index, problem in enumerate(problems):
        for offset in range(len(runs)):
            name, solver = runs[(index + offset) % len(runs)]
            wall, cpu = time.perf_counter(), time.thread_time()
            record = solver.solve(problem.id, problem.problem, problem.answer, problem.dataset)
            entry = totals[name]
            entry["wall"] += time.perf_counter() - wall
            entry["cpu"] += time.thread_time() - cpu
            if record.get("error"):
                raise RuntimeError(f"{name} failed on {problem.id}: {record['error']}")
            counters = record["counters"]
            entry["correct"] += bool(record["correct"])
            entry["steps"] += counters.get("steps", 0)
            entry["escalated"] += counters.get("escalated_steps", 0) if name != "target_only" else counters.get("steps", 0)
            entry["prefills"] += counters.get("router_prefill_calls", 0)
        print(f"\r{index + 1}/{len(problems)} problems", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    target = totals["target_only"]
    rows = []
    for name, entry in totals.items():
        rows.append({
            "run": name, "accuracy": entry["correct"] / len(problems), "target_call_rate": entry["escalated"] / entry["steps"],
            "router_prefill_calls": entry["prefills"], "wall_s": entry["wall"] / len(problems),
            "cpu_s": entry["cpu"] / len(problems), "wall_over_target_only": entry["wall"] / target["wall"],
            "cpu_over_target_only": entry["cpu"] / target["cpu"],
        })
    print(json.dumps({"problems": len(problems), "threads": args.threads, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
