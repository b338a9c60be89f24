"""In-process batching: the same lab test problems solved at --concurrency 1 and 16, side
by side in one run, per policy (draft_only and rsd by default). Prints problems/s and
steps/s at each concurrency, the ratio, the mean batch size each model saw, and whether
the greedy solutions are the same at both concurrencies (they should be: batching
changes float summation order only).

    python benchmarks/batching_throughput.py                          # shipped lab models, 32 problems
    python benchmarks/batching_throughput.py --policies rsd --limit 16 --json runs/bench/batching.json

Models are the shipped lab models (lab:draft, lab:target, lab:prm, examples/lab.yaml).
Where they are missing, tiny random models stand in (and the output says so): their
steps are noise that never meets the separator, so only the throughput means anything.
Caches are emptied before every timed run, so neither run inherits the other's prefixes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

LAB_ROLES = ("draft", "target", "prm")


def lab_config(policy: str) -> dict:
    config = yaml.safe_load((ROOT / "examples" / "lab.yaml").read_text())
    config["models"]["router"] = None  # draft_only and rsd need none
    config.update(policy=policy, threshold=None)
    return config


def tiny_config(policy: str, directory: Path) -> dict:
    """Random 2-layer models from the test helpers, for a checkout without lab weights."""
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_models

    prompt = {"format": "raw", "template": "Question: {problem}\nAnswer:\n"}
    paths = {
        "draft": tiny_models.save_tiny(directory / "draft", seed=1),
        "target": tiny_models.save_tiny(directory / "target", seed=2),
        "prm": tiny_models.save_tiny(directory / "prm", "token", num_labels=1),
    }
    return {
        "policy": policy,
        "limits": {"max_steps": 6, "max_step_tokens": 32},
        "models": {
            "draft": {"path": str(paths["draft"]), "prompt": prompt},
            "target": {"path": str(paths["target"]), "prompt": prompt},
            "prm": {"path": str(paths["prm"]), "prm_style": "skywork"},
            "router": None,
        },
    }


def lab_weights_present() -> bool:
    from arbitrage.lab import lab_model_dir

    try:
        for role in LAB_ROLES:
            lab_model_dir(role)
    except FileNotFoundError:
        return False
    return True


class BatchSizes:
    """Records the size of every batched call a model receives (instance-level, so the
    model stays what it is for every isinstance check)."""

    def __init__(self, model, method: str):
        self.sizes: list[int] = []
        inner = getattr(model, method)

        def recorded(items):
            self.sizes.append(len(items))
            return inner(items)

        setattr(model, method, recorded)

    def mean_since(self, start: int) -> float | None:
        sizes = self.sizes[start:]
        return sum(sizes) / len(sizes) if sizes else None


def forget_caches(models) -> None:
    """Empty every session / prefix KV cache, so a run cannot reuse an earlier run's."""
    for model in (models.draft, models.target, models.prm, models.router):
        for store in ("sessions", "prefixes"):
            if hasattr(model, store):
                getattr(model, store).clear()


def timed_run(config, models, problems, output: Path, concurrency: int, recorders: dict) -> dict:
    from arbitrage.eval.run import read_results, run_batch

    forget_caches(models)
    marks = {role: len(r.sizes) for role, r in recorders.items()}
    start = time.perf_counter()
    summary = run_batch(config, problems, output, models=models, concurrency=concurrency, progress=False)
    wall = time.perf_counter() - start
    if summary["n_errors"]:
        raise RuntimeError(f"{summary['n_errors']} problems failed in {output}; see results.jsonl")
    records = {r["id"]: r for r in read_results(output / "results.jsonl")}
    return {
        "concurrency": concurrency,
        "wall_s": wall,
        "problems": summary["n_problems"],
        "steps": summary["steps"],
        "problems_per_s": summary["n_problems"] / wall,
        "steps_per_s": summary["steps"] / wall,
        "mean_batch": {role: r.mean_since(marks[role]) for role, r in recorders.items()},
        "solutions": {i: [(s["text"], s["source"]) for s in r["steps"]] for i, r in records.items()},
    }


def bench_policy(config_dict: dict, problems, concurrency: int, work: Path) -> dict:
    from arbitrage.config import validate_config
    from arbitrage.servers.factory import load_models
    from arbitrage.solver import Solver

    config = validate_config(config_dict)
    models = load_models(config)
    recorders = {"draft": BatchSizes(models.draft, "step_batch")}
    if models.target is not None and models.target is not models.draft:
        recorders["target"] = BatchSizes(models.target, "step_batch")
    if models.prm is not None and hasattr(models.prm, "score_batch"):
        recorders["prm"] = BatchSizes(models.prm, "score_batch")
    Solver(config, models).solve("warmup", problems[0].problem)  # first-call costs out of the timings
    one = timed_run(config, models, problems, work / f"{config.policy}_c1", 1, recorders)
    many = timed_run(config, models, problems, work / f"{config.policy}_c{concurrency}", concurrency, recorders)
    same = sum(one["solutions"][i] == many["solutions"].get(i) for i in one["solutions"])
    return {"policy": config.policy, "c1": one, f"c{concurrency}": many, "ratio": one["wall_s"] / many["wall_s"],
            "identical_solutions": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", default="draft_only,rsd", help="comma-separated")
    parser.add_argument("--limit", type=int, default=32, help="lab test problems")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from arbitrage.eval.datasets import load_problems

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="batching_bench_"))
    lab = lab_weights_present()
    if not lab:
        print("NOTE: shipped lab weights not found; using tiny RANDOM models (throughput only, outputs are noise)")
    problems = load_problems("test", dataset="lab", limit=args.limit).problems
    results = []
    for policy in args.policies.split(","):
        config = lab_config(policy) if lab else tiny_config(policy, work / "tiny")
        result = bench_policy(config, problems, args.concurrency, work)
        results.append(result)
        print(f"\n{policy}: {len(problems)} {'lab' if lab else 'tiny random'} problems, "
              f"torch threads {torch.get_num_threads()}, runs in {work}")
        for run in (result["c1"], result[f"c{args.concurrency}"]):
            batches = ", ".join(f"{role} {size:.1f}" for role, size in run["mean_batch"].items() if size)
            print(f"  c={run['concurrency']:<3d} {run['wall_s']:7.1f} s  {run['problems_per_s']:6.3f} problems/s  "
                  f"{run['steps_per_s']:6.2f} steps/s  ({run['steps']} steps; mean batch: {batches or 'n/a'})")
        print(f"  throughput c={args.concurrency} / c=1: {result['ratio']:.2f}x")
        print(f"  greedy solutions identical at both concurrencies: {result['identical_solutions']}/{len(problems)}"
              f" -> {'same' if result['identical_solutions'] == len(problems) else 'DIFFERENT'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = [{k: v for k, v in r.items()} for r in results]
        for r in figures:
            for key in ("c1", f"c{args.concurrency}"):
                r[key] = {k: v for k, v in r[key].items() if k != "solutions"}
        args.json.write_text(json.dumps({"lab_models": lab, "results": figures}, indent=2))


if __name__ == "__main__":
    main()
