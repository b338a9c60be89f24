"""The zero-cost router: logistic regression over what the draft already produced
(token logprobs, length, position), so deciding needs no extra model forward pass.

Weights are saved as JSON (no pickle): the names of the features the router reads,
their standardisation and the coefficients. A router reads its features by name, so
a router fitted on a subset (or on an older feature set) keeps loading and reads only its own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from arbitrage.protocols import RouterQuery


class DraftSignals(NamedTuple):
    logprobs: list[float]
    num_tokens: int
    step_index: int
    target_steps_before: int


FEATURE_FUNCTIONS: dict[str, Callable[[DraftSignals], float]] = {
    "logprob_mean": lambda s: sum(s.logprobs) / len(s.logprobs),
    "logprob_min": lambda s: min(s.logprobs),
    "logprob_last": lambda s: s.logprobs[-1],
    "low_confidence_fraction": lambda s: sum(lp < -1.0 for lp in s.logprobs) / len(s.logprobs),
    "num_tokens": lambda s: math.log1p(s.num_tokens),
    "step_index": lambda s: math.log1p(s.step_index),
    "target_fraction_before": lambda s: s.target_steps_before / s.step_index if s.step_index else 0.0,
}
FEATURES = tuple(FEATURE_FUNCTIONS)
KIND = "arbitrage-feature-router"


def _features(signals: DraftSignals, names: Sequence[str]) -> list[float]:
    signals = signals._replace(logprobs=list(signals.logprobs) or [0.0])
    return [FEATURE_FUNCTIONS[name](signals) for name in names]


def row_signals(row: dict) -> DraftSignals:
    previous = row["previous_steps"]
    return DraftSignals(row["draft_token_logprobs"], row["draft_tokens"], len(previous),
                        sum(s["source"] == "target" for s in previous))


def query_signals(query: RouterQuery) -> DraftSignals:
    previous = query.previous_steps
    return DraftSignals(query.draft.token_logprobs, query.draft.num_tokens, len(previous),
                        sum(s.source == "target" for s in previous))


def row_features(row: dict, names: Sequence[str] = FEATURES) -> list[float]:
    return _features(row_signals(row), names)


def query_features(query: RouterQuery, names: Sequence[str] = FEATURES) -> list[float]:
    return _features(query_signals(query), names)


class FeatureRouter:
    """Router protocol over named draft features; probability from a standardised logistic model."""

    def __init__(self, features: Sequence[str], mean: Sequence[float], scale: Sequence[float], coef: Sequence[float],
                 intercept: float):
        unknown = [name for name in features if name not in FEATURE_FUNCTIONS]
        if unknown or not features:
            raise ValueError(f"feature router: unknown features {unknown or '(none given)'}; known: {', '.join(FEATURES)}")
        if not (len(features) == len(mean) == len(scale) == len(coef)):
            raise ValueError(f"feature router: {len(features)} features but {len(mean)} means, {len(scale)} scales "
                             f"and {len(coef)} coefficients")
        self.features = tuple(features)
        self.mean, self.scale, self.coef, self.intercept = list(mean), list(scale), list(coef), float(intercept)

    def probability(self, features: Sequence[float]) -> float:
        z = self.intercept + sum(c * (x - m) / s for c, x, m, s in zip(self.coef, features, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def score(self, query: RouterQuery) -> float:
        return self.probability(query_features(query, self.features))

    def score_row(self, row: dict) -> float:
        return self.probability(row_features(row, self.features))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"kind": KIND, "features": list(self.features), "mean": self.mean, "scale": self.scale,
                   "coef": self.coef, "intercept": self.intercept}
        (directory / "feature_router.json").write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "FeatureRouter":
        path = Path(directory) / "feature_router.json"
        if not path.exists():
            raise FileNotFoundError(f"feature router weights not found: {path}")
        payload = json.loads(path.read_text())
        if payload.get("kind") != KIND:
            raise ValueError(f"{path} is not a feature router (kind {payload.get('kind')!r}, expected {KIND!r})")
        try:
            return cls(payload["features"], payload["mean"], payload["scale"], payload["coef"], payload["intercept"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
