"""Step AUROC of lab PRMs next to the signal the target LM already carries.

Draft and target write greedy solutions to lab test problems; the checker labels every
step. Printed side by side on the same steps: the AUROC of each PRM given with `--prm`
(the shipped one by default), and of the target LM's lowest token log-probability in
the step, read once with the LM's own prompt and once with the PRM's input format.
The LM rows are the head-room: what a PRM started from the target could learn to see.

    python benchmarks/prm_step_auroc.py --problems 150 --prm runs/prm-a/prm --prm runs/prm-b/prm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.lab.checker import check_solution
from arbitrage.lab.evaluate import _auroc, load_lab_models
from arbitrage.lab.generation import generate_solutions, prm_example, prm_step_rewards, prompt_ids, split_steps
from arbitrage.lab.task import SEPARATOR, make_splits
from arbitrage.lab.tokenizer import encode


@torch.no_grad()
def lowest_token_logprob(lm, prefix: list[int], steps: list[str]) -> list[float]:
    """Per step, the lowest log-probability the LM gives one of the step's characters,
    the steps read after the token ids `prefix`."""
    ids, spans = list(prefix), []
    for step in steps:
        spans.append((len(ids), len(ids) + len(step)))
        ids += encode(step + SEPARATOR)
    logprobs = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    tokens = torch.tensor(ids)
    return [float(logprobs[a - 1:b - 1].gather(1, tokens[a:b, None]).min()) if b > a else 0.0 for a, b in spans]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=150)
    parser.add_argument("--prm", action="append", default=[], help="PRM directory (repeatable); default: shipped")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForTokenClassification

    draft, target, shipped = load_lab_models()
    prms = {"shipped PRM": shipped} if not args.prm else {
        p: AutoModelForTokenClassification.from_pretrained(p, dtype=torch.float32).eval() for p in args.prm}
    problems = make_splits(0, n_train=0, n_test=1000)[2][: args.problems]
    items = []
    for name, lm in (("draft", draft), ("target", target)):
        for p, sol in zip(problems, generate_solutions(lm, [p.problem for p in problems], batch_size=128)):
            steps = [s[:160] for s in split_steps(sol, max_steps=10)]
            if steps:
                items.append((p, steps, name))
    labels = [int(v.correct) for p, steps, _ in items for v in check_solution(p, steps)]
    sources = [name for _, steps, name in items for _ in steps]
    scores = {label: [r for rs in prm_step_rewards(prm, [(p.problem, s) for p, s, _ in items]) for r in rs]
              for label, prm in prms.items()}
    scores["target LM, lowest token logprob, LM prompt"] = [
        x for p, s, _ in items for x in lowest_token_logprob(target, prompt_ids(p.problem), s)]
    scores["target LM, lowest token logprob, PRM input"] = [
        x for p, s, _ in items for x in lowest_token_logprob(target, prm_example(p.problem, [])[0], s)]

    print(f"{len(labels)} steps of {len(problems)} test problems, {len(labels) - sum(labels)} wrong")
    print(f"{'scorer':48s} {'all':>6s} {'draft':>6s} {'target':>6s}")
    for label, s in scores.items():
        by = [_auroc([y for y, src in zip(labels, sources) if src == n], [x for x, src in zip(s, sources) if src == n])
              for n in ("draft", "target")]
        print(f"{label:48s} {_auroc(labels, s):6.3f} {by[0]:6.3f} {by[1]:6.3f}")


if __name__ == "__main__":
    main()
