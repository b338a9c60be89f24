"""The zero-cost router: logistic regression over what the draft already produced
(token logprobs, length, position), so deciding needs no extra model forward pass.

Weights are saved as JSON (no pickle): feature names, standardisation and coefficients.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from arbitrage.protocols import RouterQuery

FEATURES = (
    "logprob_mean",
    "logprob_min",
    "logprob_last",
    "low_confidence_fraction",
    "num_tokens",
    "step_index",
    "target_fraction_before",
)
KIND = "arbitrage-feature-router"


def step_features(logprobs: Sequence[float], num_tokens: int, step_index: int, target_steps_before: int) -> list[float]:
    logprobs = list(logprobs) or [0.0]
    return [
        sum(logprobs) / len(logprobs),
        min(logprobs),
        logprobs[-1],
        sum(lp < -1.0 for lp in logprobs) / len(logprobs),
        math.log1p(num_tokens),
        math.log1p(step_index),
        target_steps_before / step_index if step_index else 0.0,
    ]


def row_features(row: dict) -> list[float]:
    previous = row["previous_steps"]
    return step_features(
        row["draft_token_logprobs"], row["draft_tokens"], len(previous), sum(s["source"] == "target" for s in previous)
    )


def query_features(query: RouterQuery) -> list[float]:
    previous = query.previous_steps
    return step_features(
        query.draft.token_logprobs, query.draft.num_tokens, len(previous), sum(s.source == "target" for s in previous)
    )


class FeatureRouter:
    """Router protocol over `query_features`; probability from a standardised logistic model."""

    def __init__(self, mean: Sequence[float], scale: Sequence[float], coef: Sequence[float], intercept: float):
        if not (len(mean) == len(scale) == len(coef) == len(FEATURES)):
            raise ValueError(f"feature router expects {len(FEATURES)} features: {', '.join(FEATURES)}")
        self.mean, self.scale, self.coef, self.intercept = list(mean), list(scale), list(coef), float(intercept)

    def probability(self, features: Sequence[float]) -> float:
        z = self.intercept + sum(c * (x - m) / s for c, x, m, s in zip(self.coef, features, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def score(self, query: RouterQuery) -> float:
        return self.probability(query_features(query))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"kind": KIND, "features": list(FEATURES), "mean": self.mean, "scale": self.scale,
                   "coef": self.coef, "intercept": self.intercept}
        (directory / "feature_router.json").write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "FeatureRouter":
        path = Path(directory) / "feature_router.json"
        if not path.exists():
            raise FileNotFoundError(f"feature router weights not found: {path}")
        payload = json.loads(path.read_text())
        if payload.get("kind") != KIND or payload.get("features") != list(FEATURES):
            raise ValueError(f"{path} is not a feature router for features {FEATURES}")
        return cls(payload["mean"], payload["scale"], payload["coef"], payload["intercept"])


def fit_feature_router(rows: list[dict], *, seed: int = 0, C: float = 1.0) -> FeatureRouter:
    """Fit on binary labels; rows are expected already balanced if balancing is wanted."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.array([row_features(r) for r in rows], dtype=float)
    y = np.array([r["label"] for r in rows])
    if len(set(y.tolist())) < 2:
        raise ValueError("feature router needs rows of both labels")
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    model = LogisticRegression(C=C, random_state=seed, max_iter=1000).fit((x - mean) / scale, y)
    return FeatureRouter(mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]))


def load_feature_router(model_cfg, config) -> FeatureRouter:
    """Backend hook for `router_kind: features` (path may be lab:NAME)."""
    from arbitrage.servers.transformers_backend.loading import resolve_path

    return FeatureRouter.load(resolve_path(model_cfg.path, "router"))
