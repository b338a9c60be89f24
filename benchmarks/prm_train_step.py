"""A lab PRM training step with the frozen bottom layers cached vs run every step, side by side.

Both paths train the same PRM (the shipped target's shape, the recipe's top 4 layers) on
the same batches of lab reference solutions; their steps alternate, each going first
half the time, so machine load hits both alike. Prints the mean step time of each, their
ratio, and the one-off cost of the cache per solution.

    python benchmarks/prm_train_step.py --steps 20 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.lab import WEIGHTS_DIR
from arbitrage.lab.frozen_bottom import CachedPRMLoss, cache_bottom, freeze_bottom
from arbitrage.lab.modeling import TARGET_SIZE, new_prm
from arbitrage.lab.prm_training import PRMRecipe, make_example, prm_loss
from arbitrage.lab.task import make_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=PRMRecipe().batch_size)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(WEIGHTS_DIR / "target", dtype=torch.float32)
    train, _, _ = make_splits(0, n_train=args.steps * args.batch_size, n_validation=0, n_test=0)
    examples = [make_example(p.problem, p.steps, [1] * len(p.steps), dense=False, lm=False) for p in train]
    n_frozen = TARGET_SIZE.layers - PRMRecipe().train_top_layers
    prm = new_prm(TARGET_SIZE, seed=0, init_from=target)
    freeze_bottom(prm, n_frozen)  # as the recipe does: the full forward has no gradient below the top
    optimizer = torch.optim.AdamW([p for p in prm.parameters() if p.requires_grad], lr=1e-4)

    start = time.perf_counter()
    cached = cache_bottom(prm.eval(), examples, n_frozen, "cpu")
    cache_s = time.perf_counter() - start
    cached_loss = CachedPRMLoss(prm, n_frozen)
    prm.train()

    times: dict[str, list[float]] = {"full forward": [], "cached bottom": []}
    for step in range(args.steps):
        batch = slice(step * args.batch_size, (step + 1) * args.batch_size)
        for name in sorted(times, reverse=step % 2 == 1):  # each goes first half the time
            start = time.perf_counter()
            if name == "full forward":
                loss = prm_loss(prm, examples[batch], "cpu")
            else:
                loss = cached_loss(prm, cached[batch], "cpu")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[name].append(time.perf_counter() - start)

    print(f"{args.steps} steps of {args.batch_size} solutions each way, torch threads: {args.threads}")
    for name, values in times.items():
        print(f"{name:14s}: {1000 * statistics.mean(values):8.1f} ms/step")
    ratio = statistics.mean(times["full forward"]) / statistics.mean(times["cached bottom"])
    print(f"full / cached step time: {ratio:.2f}x")
    print(f"cache, once: {1000 * cache_s / len(examples):.1f} ms/solution ({len(examples)} solutions)")


if __name__ == "__main__":
    main()
