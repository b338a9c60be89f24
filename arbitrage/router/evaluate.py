"""Router metrics: Spearman(score, delta) (the paper's main router metric), AUROC on
the binary label, balanced accuracy at 0.5 and accuracy on each label."""

from __future__ import annotations

from typing import Sequence


def router_metrics(scores: Sequence[float], rows: Sequence[dict], *, cutoff: float = 0.5) -> dict:
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    if len(scores) != len(rows):
        raise ValueError(f"{len(scores)} scores for {len(rows)} rows")
    if not rows:
        raise ValueError("no rows to evaluate")
    labels = [r["label"] for r in rows]
    deltas = [r["delta"] for r in rows]
    predicted = [int(s > cutoff) for s in scores]

    def label_accuracy(label: int) -> float | None:
        hits = [p == label for p, y in zip(predicted, labels) if y == label]
        return sum(hits) / len(hits) if hits else None

    positive, negative = label_accuracy(1), label_accuracy(0)
    both = len(set(labels)) == 2
    rho = spearmanr(scores, deltas).statistic if len(set(scores)) > 1 and len(set(deltas)) > 1 else None
    return {
        "n": len(rows),
        "positive_fraction": sum(labels) / len(labels),
        "spearman": None if rho is None else float(rho),
        "auroc": float(roc_auc_score(labels, scores)) if both else None,
        "balanced_accuracy": (positive + negative) / 2 if both else None,
        "accuracy_label_1": positive,
        "accuracy_label_0": negative,
    }
