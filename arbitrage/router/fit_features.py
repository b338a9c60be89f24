"""Fit the zero-cost feature router (arbitrage/servers/feature_router.py) on router rows."""

from __future__ import annotations

from typing import Sequence

from arbitrage.servers.feature_router import FEATURES, FeatureRouter, row_features


def fit_feature_router(rows: list[dict], *, seed: int = 0, C: float = 1.0,
                       features: Sequence[str] = FEATURES) -> FeatureRouter:
    """Fit on binary labels; rows are expected already balanced if balancing is wanted."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([row_features(r, features) for r in rows], dtype=float)
    y = np.array([r["label"] for r in rows])
    if len(set(y.tolist())) < 2:
        raise ValueError("feature router needs rows of both labels")
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    model = LogisticRegression(C=C, random_state=seed, max_iter=1000).fit((x - mean) / scale, y)
    return FeatureRouter(features, mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]))
