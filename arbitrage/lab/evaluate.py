"""Lab figures on the test split: draft-only and target-only accuracy, PRM AUROC on
held-out steps written by both models, and the oracle policy over a threshold grid.

The oracle runs the step loop itself (batched over problems): at each step both
models write a step from the same accepted prefix (greedy), the PRM scores both,
and the target's step is taken iff `s_t - s_d > tau` and it differs from the draft's
(the oracle's rule, `arbitrage/policies.py`). Steps and scores are cached by prefix, so the
threshold grid shares work. The escalation rate is escalated steps / committed steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import torch

from arbitrage.lab import WEIGHTS_DIR, progress_bar
from arbitrage.lab.checker import answer_correct, check_solution, extract_boxed
from arbitrage.lab.generation import generate_solutions, generate_steps, prm_step_rewards, split_steps
from arbitrage.lab.task import LabProblem, make_splits
from arbitrage.policies import ORACLE, StepScores

ORACLE_TAUS = (-0.5, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def load_lab_models(weights: str | Path = WEIGHTS_DIR, device: str = "cpu"):
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    weights = Path(weights)
    draft = AutoModelForCausalLM.from_pretrained(weights / "draft", dtype=torch.float32).to(device).eval()
    target = AutoModelForCausalLM.from_pretrained(weights / "target", dtype=torch.float32).to(device).eval()
    prm = AutoModelForTokenClassification.from_pretrained(weights / "prm", dtype=torch.float32).to(device).eval()
    return draft, target, prm


def _auroc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def run_oracle(draft, target, prm, problems: Sequence[LabProblem], taus: Sequence[float], max_steps: int = 10,
               batch_size: int = 256) -> list[dict]:
    draft_cache: dict = {}
    target_cache: dict = {}
    score_cache: dict = {}
    results = []
    bar = progress_bar(len(taus), "oracle thresholds")
    for tau in taus:
        states = [{"steps": [], "escalated": 0, "done": False} for _ in problems]
        while True:
            active = [i for i, s in enumerate(states) if not s["done"]]
            if not active:
                break
            keys = [(i, tuple(states[i]["steps"])) for i in active]
            for cache, model in ((draft_cache, draft), (target_cache, target)):
                todo = [k for k in keys if k not in cache]
                if todo:
                    outs = generate_steps(model, [problems[i].problem for i, _ in todo], [list(p) for _, p in todo],
                                          batch_size=batch_size)
                    cache.update(zip(todo, outs))
            score_keys = []
            for k in keys:
                for cand in (draft_cache[k], target_cache[k]):
                    sk = (k[0], k[1] + (cand.text,))
                    if sk not in score_cache:
                        score_keys.append(sk)
            score_keys = list(dict.fromkeys(score_keys))
            if score_keys:
                rewards = prm_step_rewards(prm, [(problems[i].problem, list(s)) for i, s in score_keys],
                                           batch_size=batch_size)
                score_cache.update({sk: r[-1] for sk, r in zip(score_keys, rewards)})
            for k in keys:
                i = k[0]
                d, t = draft_cache[k], target_cache[k]
                s_d, s_t = score_cache[(i, k[1] + (d.text,))], score_cache[(i, k[1] + (t.text,))]
                chosen = d
                if ORACLE.escalates(tau, StepScores(draft=s_d, target=s_t, same_text=t.text == d.text)):
                    chosen = t
                    states[i]["escalated"] += 1
                states[i]["steps"].append(chosen.text)
                if (chosen.finish_reason != "separator" or "\\boxed" in chosen.text
                        or len(states[i]["steps"]) >= max_steps):
                    states[i]["done"] = True
        n_steps = sum(len(s["steps"]) for s in states)
        correct = sum(extract_boxed(s["steps"][-1]) == p.answer for s, p in zip(states, problems))
        results.append({"tau": tau, "accuracy": correct / len(problems),
                        "escalation_rate": sum(s["escalated"] for s in states) / max(1, n_steps),
                        "steps": n_steps})
        bar.update(1)
    bar.close()
    return results


def _accuracy_and_prm_figures(draft, target, prm, problems: Sequence[LabProblem], batch_size: int) -> dict:
    """Draft-only and target-only accuracy, and PRM AUROC on the steps both wrote."""
    texts = [p.problem for p in problems]
    report: dict = {}
    solutions = {}
    bar = progress_bar(3, "draft-only, target-only, PRM")
    for name, model in (("draft", draft), ("target", target)):
        t = time.time()
        sols = generate_solutions(model, texts, batch_size=batch_size)
        solutions[name] = sols
        report[f"{name}_only_accuracy"] = sum(answer_correct(p, s) for p, s in zip(problems, sols)) / len(problems)
        report[f"{name}_generate_seconds"] = round(time.time() - t, 2)
        bar.update(1)

    # PRM AUROC on the steps both models wrote on held-out problems (checker labels).
    labels, scores, sources = [], [], []
    items = []
    for name in ("draft", "target"):
        for p, sol in zip(problems, solutions[name]):
            steps = [s[:160] for s in split_steps(sol, max_steps=10)]
            if steps:
                items.append((p, steps, name))
    rewards = prm_step_rewards(prm, [(p.problem, s) for p, s, _ in items], batch_size=batch_size)
    bar.update(1)
    bar.close()
    for (p, steps, name), r in zip(items, rewards):
        verdicts = check_solution(p, steps)
        labels += [int(v.correct) for v in verdicts]
        scores += r
        sources += [name] * len(steps)
    report["prm_auroc"] = _auroc(labels, scores)
    for name in ("draft", "target"):
        sel = [i for i, s in enumerate(sources) if s == name]
        report[f"prm_auroc_{name}_steps"] = _auroc([labels[i] for i in sel], [scores[i] for i in sel])
        report[f"{name}_step_accuracy"] = sum(labels[i] for i in sel) / max(1, len(sel))
    report["prm_steps_scored"] = len(labels)
    report["prm_wrong_steps"] = len(labels) - sum(labels)
    return report


def _earlier_figures(progress_path: str | Path | None, report: dict) -> dict | None:
    """The first phases' figures from an earlier run of the same evaluation, if any."""
    if not progress_path or not Path(progress_path).is_file():
        return None
    earlier = json.loads(Path(progress_path).read_text())
    same = all(earlier.get(k) == v for k, v in report.items())
    return earlier if same and "prm_auroc" in earlier else None


def evaluate(weights: str | Path = WEIGHTS_DIR, n: int = 500, seed: int = 0, device: str = "cpu",
             taus: Sequence[float] = ORACLE_TAUS, batch_size: int = 256, progress_path: str | Path | None = None) -> dict:
    """All lab figures on the first `n` problems of the test split of `seed`."""
    t0 = time.time()
    _, _, test = make_splits(seed, n_train=0, n_test=max(n, 1000))
    problems = test[:n]
    draft, target, prm = load_lab_models(weights, device)
    report: dict = {"n": len(problems), "split": "test", "seed": seed, "device": device, "decoding": "greedy",
                    "weights": str(Path(weights).resolve())}
    earlier = _earlier_figures(progress_path, report)
    if earlier is None:
        report.update(_accuracy_and_prm_figures(draft, target, prm, problems, batch_size))
        if progress_path:
            Path(progress_path).write_text(json.dumps(report, indent=2))
    else:  # a rerun after a stop in the oracle phase starts there
        report = earlier

    t = time.time()
    oracle = run_oracle(draft, target, prm, problems, taus, batch_size=batch_size)
    report["oracle_seconds"] = round(time.time() - t, 2)
    report["oracle"] = oracle
    best = max(oracle, key=lambda r: (r["accuracy"], -r["escalation_rate"]))
    report["oracle_best"] = best
    ok = [r for r in oracle if r["accuracy"] >= report["target_only_accuracy"]]
    report["oracle_cheapest_matching_target"] = min(ok, key=lambda r: r["escalation_rate"]) if ok else None
    report["seconds"] = round(time.time() - t0, 1)
    return report
