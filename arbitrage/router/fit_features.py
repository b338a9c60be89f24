"""Fit the zero-cost feature router (arbitrage/servers/feature_router.py) on router rows,
recording the draft that wrote them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from arbitrage.config import ModelConfig
from arbitrage.eval.run import CONFIG_FILE
from arbitrage.servers.feature_router import FEATURES, FeatureRouter, model_identity, row_features, same_model


def fit_feature_router(rows: list[dict], *, seed: int = 0, C: float = 1.0,
                       features: Sequence[str] = FEATURES, draft: dict | None = None) -> FeatureRouter:
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
    return FeatureRouter(features, mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]),
                         draft=draft)


def data_identity(data_dir: str | Path, role: str = "draft") -> dict | None:
    """`model_identity` of the `role` model of the generate runs under a router data
    directory (arbitrage/router/build_data.py); None when none recorded its config. Raises
    ValueError when its shards were written by different models."""
    found: list[dict] = []
    for config_path in sorted(Path(data_dir).glob(f"generate*/{CONFIG_FILE}")):
        model = json.loads(config_path.read_text()).get("models", {}).get(role)
        if model is None:
            continue
        identity = model_identity(ModelConfig.model_validate(model))
        if found and not same_model(found[0], identity):
            raise ValueError(f"{config_path.parent} was generated with {role} {identity['path']!r}, "
                             f"another shard with {found[0]['path']!r}; fit one router per {role}")
        found.append(identity)
    return found[0] if found else None
