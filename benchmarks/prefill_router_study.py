"""What the target's prefill of a draft step tells about the step: the study behind
`lab:router-prefill`, on validation rows only (the test rows stay for the final figures).

For every router row (written by `arbitrage router build-data --dataset lab`) the target
scores the row's draft step in one forward (`score_continuation`). Printed, on the
validation rows:
- each feature's AUROC at finding the draft's wrong steps (the lab checker's verdict) and
  at the paper's label `y = 1[s_t > s_d]`, with its direction (+: high means escalate);
- logistic models over feature sets (the draft's own features, the target's, both),
  fitted on the training rows with either label (balanced by downsampling, as the
  routers here are), each scored on both labels;
- a small gradient-boosted tree model on all features, to see what a non-linear model adds.

    python benchmarks/prefill_router_study.py --data runs/router-data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.config import load_config
from arbitrage.lab.evaluate import _auroc
from arbitrage.router.dataset import downsample_majority, load_split
from arbitrage.router.fit_prefill import add_target_logprobs, fit_prefill_model, row_label
from arbitrage.servers.prefill_router import FEATURES, features_of, row_prefill_signals

DRAFT_ONLY = tuple(name for name in FEATURES if name.startswith("draft_"))
TARGET_ONLY = tuple(name for name in FEATURES if name.startswith("target_"))
FEATURE_SETS = {"draft features": DRAFT_ONLY, "target features": TARGET_ONLY,
                "target + gaps": TARGET_ONLY + ("gap_max", "gap_mean"), "all": FEATURES}


def balanced(rows: list[dict], label: str, seed: int = 0) -> tuple[list[dict], list[int]]:
    tagged = [{**r, "label": row_label(r, label)} for r in rows]
    chosen = downsample_majority(tagged, seed)
    return chosen, [r["label"] for r in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="router data directory (build-data on lab training problems)")
    parser.add_argument("--config", default=None, help="whose target scores the steps (default: the lab models)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch

    from arbitrage.servers.factory import load_models

    torch.set_num_threads(args.threads)
    target = load_models(load_config(args.config), roles=("target",)).target
    train = add_target_logprobs(load_split(args.data, "train"), target, progress=True)
    validation = add_target_logprobs(load_split(args.data, "validation"), target, progress=True)
    wrong = [row_label(r, "checker") for r in validation]
    paper = [row_label(r, "delta") for r in validation]
    print(json.dumps({"train_rows": len(train), "validation_rows": len(validation),
                      "validation_wrong_draft_steps": sum(wrong), "validation_positive_labels": sum(paper)}))

    values = np.array([features_of(row_prefill_signals(r)) for r in validation])
    for index, name in enumerate(FEATURES):
        column = values[:, index].tolist()
        auc_wrong, auc_label = _auroc(wrong, column), _auroc(paper, column)
        sign = "+" if auc_wrong >= 0.5 else "-"
        flip = (lambda a: a) if sign == "+" else (lambda a: 1 - a)
        print(json.dumps({"feature": name, "direction": sign, "auroc_wrong_step": round(flip(auc_wrong), 3),
                          "auroc_label": round(flip(auc_label), 3)}))

    for label in ("delta", "checker"):
        rows, labels = balanced(train, label)
        for set_name, names in FEATURE_SETS.items():
            model = fit_prefill_model(rows, labels, features=names)
            scores = [model.probability(row_prefill_signals(r)) for r in validation]
            print(json.dumps({"model": f"logistic, {set_name}", "fitted_on": label, "train_rows": len(rows),
                              "auroc_wrong_step": round(_auroc(wrong, scores), 3),
                              "auroc_label": round(_auroc(paper, scores), 3)}))
        from sklearn.ensemble import GradientBoostingClassifier

        x = np.array([features_of(row_prefill_signals(r)) for r in rows])
        trees = GradientBoostingClassifier(n_estimators=100, max_depth=2, learning_rate=0.1, random_state=0)
        scores = trees.fit(x, labels).predict_proba(values)[:, 1].tolist()
        print(json.dumps({"model": "gradient-boosted trees (100 x depth 2), all", "fitted_on": label,
                          "train_rows": len(rows), "auroc_wrong_step": round(_auroc(wrong, scores), 3),
                          "auroc_label": round(_auroc(paper, scores), 3)}))


if __name__ == "__main__":
    main()
