"""Wall time of lab solution sampling: static vs dynamic KV cache, side by side.

Samples whole solutions with a shipped lab model on lab training problems, the way
`arbitrage lab train` samples its PRM data (`generate_solutions`, one batch per
temperature), once with each cache, alternating the two so both see the same machine
load. Prints each run's time, the ratio and how many solutions the two wrote alike.

    python benchmarks/lab_sampling.py --model draft --problems 500 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.lab import lab_model_dir
from arbitrage.lab.generation import generate_solutions
from arbitrage.lab.task import make_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["draft", "target"], default="draft")
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--skip", type=int, default=2000, help="first training problem used")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each cache, alternated")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(lab_model_dir(args.model)).eval()
    train, _, _ = make_splits(0, n_train=args.skip + args.problems)
    texts = [p.problem for p in train[args.skip:args.skip + args.problems]]
    seconds: dict[str, list[float]] = {"dynamic": [], "static": []}
    outputs: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for cache in seconds:
            t0 = time.perf_counter()
            outputs[cache] = generate_solutions(model, texts, temperature=args.temperature,
                                                batch_size=args.batch_size, seed=0, cache=cache)
            seconds[cache].append(time.perf_counter() - t0)
    same = sum(a == b for a, b in zip(outputs["static"], outputs["dynamic"]))
    print(f"{args.model}, {len(texts)} problems, temperature {args.temperature}, batch {args.batch_size}, "
          f"torch threads: {torch.get_num_threads()}")
    for cache, times in seconds.items():
        print(f"{cache:8s}: " + ", ".join(f"{t:.1f} s" for t in times))
    print(f"dynamic/static wall time: {min(seconds['dynamic']) / min(seconds['static']):.2f}x")
    print(f"solutions written alike: {same} / {len(texts)}")


if __name__ == "__main__":
    main()
