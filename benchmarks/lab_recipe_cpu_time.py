"""How long the lab recipe's language-model phases take on this machine's CPU.

Times training steps of the recipe's draft and target (fresh models of the recipe's
shapes, AdamW, the recipe's batch size, batches of lab reference solutions) and prints
the median step time and what the recipe's step counts cost at that rate: the draft's
steps until it stopped in the shipped run (MODEL_CARD.md) and the target's full schedule.
The PRM phases are timed in MODEL_CARD.md already; this is the part the issue's
"about an hour on 2 CPU cores" depends on.

    python benchmarks/lab_recipe_cpu_time.py --steps 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.lab.modeling import new_causal_lm
from arbitrage.lab.task import make_splits
from arbitrage.lab.train import Recipe, _batch, lm_example

# Where the shipped draft stopped (validation accuracy reached the recipe's stop_at_acc).
SHIPPED_DRAFT_STEPS = 1400


def step_seconds(lm, examples, steps: int) -> list[float]:
    model = new_causal_lm(lm.size, 0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lm.lr, betas=(0.9, 0.98), weight_decay=0.01)
    times = []
    for i in range(steps + 1):  # the first step warms up allocations and is not counted
        batch = _batch(examples[i * lm.batch_size:(i + 1) * lm.batch_size], "cpu")
        start = time.perf_counter()
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.steps < 1 or args.threads < 1:
        parser.error(f"--steps and --threads must be >= 1, got {args.steps} and {args.threads}")
    torch.set_num_threads(args.threads)
    recipe = Recipe()
    needed = (args.steps + 1) * max(recipe.draft.batch_size, recipe.target.batch_size)
    train, _, _ = make_splits(0, n_train=needed, n_validation=0, n_test=0)
    examples = [lm_example(p) for p in train]
    out = {"threads": args.threads}
    for name, lm, steps in (("draft", recipe.draft, SHIPPED_DRAFT_STEPS),
                            ("target", recipe.target, recipe.target.max_steps)):
        median = statistics.median(step_seconds(lm, examples, args.steps))
        out[name] = {"batch_size": lm.batch_size, "seconds_per_step": round(median, 2), "recipe_steps": steps,
                     "projected_hours": round(median * steps / 3600, 1)}
    out["projected_hours_lm_phases"] = round(out["draft"]["projected_hours"] + out["target"]["projected_hours"], 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
