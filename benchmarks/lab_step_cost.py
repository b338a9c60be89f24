"""Wall time of one reasoning step: shipped lab target vs lab draft, side by side.

Both models write the next step from the same prefixes (test problems, each prefix
made of the reference steps so far), through the same code path (transformers
`generate` with KV cache, greedy, stop at "\\n\\n" or EOS), at the same batch size,
interleaved call by call so both see the same machine load. Prints per-step and
per-token wall time of each model and the ratios.

    python benchmarks/lab_step_cost.py --problems 20 --batch-size 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.lab import lab_model_dir
from arbitrage.lab.generation import generate_steps
from arbitrage.lab.task import make_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    models = {name: AutoModelForCausalLM.from_pretrained(lab_model_dir(name)).eval() for name in ("draft", "target")}
    _, _, test = make_splits(0, n_train=0, n_validation=0, n_test=max(args.problems, 1))
    work = [(p.problem, list(p.steps[:k])) for p in test[: args.problems] for k in range(p.num_ops)]
    batches = [work[i:i + args.batch_size] for i in range(0, len(work), args.batch_size)]
    for model in models.values():  # warm up
        generate_steps(model, [work[0][0]], [work[0][1]])
    seconds = {name: [] for name in models}
    tokens = {name: 0 for name in models}
    for batch in batches:
        for name, model in models.items():
            t0 = time.perf_counter()
            out = generate_steps(model, [b[0] for b in batch], [b[1] for b in batch], batch_size=args.batch_size)
            seconds[name].append(time.perf_counter() - t0)
            tokens[name] += sum(s.num_tokens for s in out)
    print(f"steps: {len(work)} (batches of {args.batch_size}), torch threads: {torch.get_num_threads()}")
    per_step = {}
    for name in models:
        total = sum(seconds[name])
        per_step[name] = total / len(work)
        print(f"{name:6s}: {1000 * per_step[name]:8.2f} ms/step  {1000 * total / tokens[name]:6.2f} ms/token  "
              f"(median batch {1000 * statistics.median(seconds[name]):.1f} ms, {tokens[name]} tokens)")
    print(f"target/draft wall time per step: {per_step['target'] / per_step['draft']:.2f}x")
    print(f"target/draft wall time per token: "
          f"{(sum(seconds['target']) / tokens['target']) / (sum(seconds['draft']) / tokens['draft']):.2f}x")


if __name__ == "__main__":
    main()
