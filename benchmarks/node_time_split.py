"""Per-step wall time split by graph node, and the graph's own overhead per step.

Runs RSD (draft, PRM, target: every node kind) over a few problems and prints, per
committed step, the seconds spent in each node and in LangGraph itself (latency minus
the nodes' time), plus the overhead's share of a step. Also measures the overhead
with zero-cost scripted models, which isolates LangGraph's per-step cost.

    python benchmarks/node_time_split.py                        # lab models, lab test split
    python benchmarks/node_time_split.py --smollm2 --limit 2    # SmolLM2-135M GGUF + judge PRM on GSM8K
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def scripted_overhead(steps_per_problem: int = 20, problems: int = 50) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import ScriptedGenerator, ScriptedPRM

    from arbitrage.config import Config, Limits
    from arbitrage.servers.factory import ModelSet
    from arbitrage.solver import Solver

    texts = [f"step {i}" for i in range(steps_per_problem - 1)] + ["\\boxed{1}"]
    generator = ScriptedGenerator("g", texts)
    prm = ScriptedPRM({text: (0.9 if i % 2 else 0.1) for i, text in enumerate(texts)})
    solver = Solver(Config(policy="rsd", threshold=0.5, limits=Limits(max_steps=100)),
                    ModelSet(draft=generator, target=generator, prm=prm))
    start = time.perf_counter()
    records = [solver.solve(f"p{i}", "q", None) for i in range(problems)]
    elapsed = time.perf_counter() - start
    steps = sum(len(r["steps"]) for r in records)
    return {"steps": steps, "graph_overhead_per_step_ms": 1000 * sum(r["timings_s"]["graph_overhead"] for r in records) / steps,
            "total_per_step_ms": 1000 * elapsed / steps}


def real_split(args) -> dict:
    from arbitrage.config import load_config, validate_config
    from arbitrage.eval.datasets import load_problems
    from arbitrage.eval.run import run_batch

    if args.smollm2:
        from arbitrage.servers.smollm2 import ensure_smollm2

        directory, gguf = ensure_smollm2(ROOT / ".cache" / "smollm2")
        data = load_config(ROOT / "examples" / "smollm2.yaml").model_dump()
        for role in ("draft", "target", "prm"):
            data["models"][role].update(path=str(directory), gguf_file=gguf)
        config = validate_config(data)
        problems = load_problems(ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl", limit=args.limit).problems
    else:
        config = load_config(None).with_overrides(policy="rsd")
        problems = load_problems("test", dataset="lab", limit=args.limit).problems
    with tempfile.TemporaryDirectory() as directory:
        summary = run_batch(config, problems, directory, progress=True)
    steps = summary["steps"]
    per_step = summary["time_per_step_by_node_s"]
    step_time = sum(per_step.values())
    return {
        "model": "smollm2" if args.smollm2 else "lab",
        "problems": summary["n_problems"],
        "steps": steps,
        "per_step_s_by_node": per_step,
        "graph_overhead_per_step_ms": 1000 * per_step.get("graph_overhead", 0.0),
        "graph_overhead_share_of_step": per_step.get("graph_overhead", 0.0) / step_time if step_time else None,
        "latency_s": summary["latency_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smollm2", action="store_true")
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    report = {"scripted_models": scripted_overhead(), "real_models": real_split(args)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
