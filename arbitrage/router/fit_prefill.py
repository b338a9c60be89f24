"""Fitting the target-verified router (arbitrage/servers/prefill_router.py;
`arbitrage router train --kind target_prefill`).

The target scores every row's draft step (one prefill each, batched), and the logistic
model is fitted on the chosen label with the classes balanced by downsampling. Rows are
put in problem and step order first: `build-data --concurrency N` writes them in the
order problems finish, and the downsampling draw should not depend on that.

The cascade's zero-cost feature router is saved with the model: a given one (`cascade`,
e.g. the shipped `lab:router-features`, so a cascade scores exactly as a run with
`router_kind: features` would), else one fitted on the same rows as `--kind features` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from arbitrage.protocols import ContinuationScorer
from arbitrage.router.dataset import downsample_majority
from arbitrage.router.evaluate import router_metrics
from arbitrage.router.fit_features import fit_feature_router
from arbitrage.servers.batching import ContinuationRequest
from arbitrage.servers.feature_router import FeatureRouter
from arbitrage.servers.prefill_router import (
    FEATURES, TARGET_LOGPROBS_FIELD, FittedOn, PrefillModel, features_of, row_prefill_signals, save_prefill_router,
)

LABELS = ("delta", "checker")


def add_target_logprobs(rows: list[dict], target: ContinuationScorer, *, batch_size: int = 32,
                        progress: bool = False) -> list[dict]:
    """Each row with the target's `score_continuation` of its draft step (rows in place, and returned)."""
    batched = getattr(target, "score_continuation_batch", None)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), desc="target prefill", dynamic_ncols=True, mininterval=2.0)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        requests = [ContinuationRequest(r["problem"], tuple(s["text"] for s in r["previous_steps"]), r["draft_step"])
                    for r in chunk]
        if batched is not None:
            values = batched(requests)
        else:
            values = [target.score_continuation(q.problem, list(q.steps), q.text) for q in requests]
        for row, scores in zip(chunk, values):
            row[TARGET_LOGPROBS_FIELD] = [float(v) for v in scores]
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return rows


def row_label(row: dict, label: str) -> int:
    """`delta`: the paper's label (the target's step scores higher); `checker`: the lab's exact
    checker finds the draft step wrong (lab problems only)."""
    if label == "delta":
        return int(row["label"])
    if label == "checker":
        from arbitrage.lab.checker import check_step

        previous = [step["text"] for step in row["previous_steps"]]
        try:
            return int(not check_step(row["problem"], previous, row["draft_step"]).correct)
        except ValueError as error:
            raise ValueError(f"label 'checker' needs lab problems; the lab checker cannot read problem "
                             f"{row.get('problem_id')!r} ({error}); fit with label 'delta'") from None
    raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")


def fit_prefill_model(rows: list[dict], labels: Sequence[int], *, features: Sequence[str] = FEATURES,
                      C: float = 1.0, seed: int = 0) -> PrefillModel:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([features_of(row_prefill_signals(r), features) for r in rows], dtype=float)
    y = np.array(list(labels))
    if len(set(y.tolist())) < 2:
        raise ValueError("the prefill router needs rows of both labels")
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    model = LogisticRegression(C=C, random_state=seed, max_iter=2000).fit((x - mean) / scale, y)
    return PrefillModel(features, mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]))


def train_prefill_router(train_rows: list[dict], validation_rows: list[dict], output: str | Path, *, label: str,
                         target, seed: int = 0, downsample: bool = True, cascade: FeatureRouter | None = None,
                         features: Sequence[str] = FEATURES, fitted_on: FittedOn = FittedOn()) -> dict:
    """Fit, save under `output`, and return the validation metrics (on the paper's label, and
    the AUROC at finding wrong draft steps when fitted on the checker's verdict). `fitted_on`:
    the draft that wrote the rows and the `target` scoring them, recorded with the weights."""
    if label not in LABELS:
        raise ValueError(f"--label must be one of {', '.join(LABELS)}, got {label!r}")
    train_rows = sorted(train_rows, key=lambda row: (row["problem_id"], row["step_index"]))
    add_target_logprobs(train_rows, target, progress=True)
    add_target_logprobs(validation_rows, target, progress=True)
    tagged = [{**row, "label": row_label(row, label)} for row in train_rows]
    chosen = downsample_majority(tagged, seed) if downsample else tagged
    model = fit_prefill_model(chosen, [row["label"] for row in chosen], features=features, seed=seed)
    cascade_source = "given"
    if cascade is None:
        cascade = fit_feature_router(downsample_majority(train_rows, seed) if downsample else train_rows, seed=seed,
                                     draft=fitted_on.draft)
        cascade_source = "fitted on the same rows (paper's label)"
    training = {"label": label, "rows": len(train_rows), "fitted_rows": len(chosen), "downsample": downsample,
                "seed": seed, "cascade": cascade_source}
    save_prefill_router(output, model, label=label, cascade=cascade, fitted_on=fitted_on, training=training)
    scores = [model.probability(row_prefill_signals(row)) for row in validation_rows]
    metrics = router_metrics(scores, validation_rows)
    if label == "checker":
        from sklearn.metrics import roc_auc_score

        wrong = [row_label(row, "checker") for row in validation_rows]
        metrics["auroc_wrong_step"] = float(roc_auc_score(wrong, scores)) if len(set(wrong)) == 2 else None
    return metrics

