"""The zero-cost router: logistic regression over what the draft already produced
(token logprobs, length, position), so deciding needs no extra model forward pass.

Weights are saved as JSON (no pickle): the names of the features the router reads,
their standardisation and the coefficients. A router reads its features by name, so
a router fitted on a subset (or on an older feature set) keeps loading and reads only its own.

The features are standardised on one draft's logprobs, so the JSON also records that
draft (`draft`: its path, served model name and, where local, checkpoint fingerprint);
`check_fitted_on` refuses the router beside another draft unless the config allows it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from arbitrage.config import ConfigError, ModelConfig
from arbitrage.protocols import RouterQuery
from arbitrage.servers.checkpoint_fingerprint import path_fingerprint
from arbitrage.servers.logistic import StandardizedLogistic

log = logging.getLogger(__name__)


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


class FeatureRouter(StandardizedLogistic):
    """Router protocol over named draft features; probability from a standardised logistic model."""

    def __init__(self, features: Sequence[str], mean: Sequence[float], scale: Sequence[float], coef: Sequence[float],
                 intercept: float, *, draft: dict | None = None):
        super().__init__(features, mean, scale, coef, intercept, known=FEATURE_FUNCTIONS, what="feature router")
        self.draft = draft  # model_identity() of the draft it was fitted on; None: not recorded

    def probability(self, features: Sequence[float]) -> float:
        return self.logistic(features)

    def score(self, query: RouterQuery) -> float:
        return self.probability(query_features(query, self.features))

    def score_row(self, row: dict) -> float:
        return self.probability(row_features(row, self.features))

    def to_json(self) -> dict:
        return {"kind": KIND, **self.weights_json(), "draft": self.draft}

    @classmethod
    def from_json(cls, payload: dict) -> "FeatureRouter":
        if payload.get("kind") != KIND:
            raise ValueError(f"not a feature router (kind {payload.get('kind')!r}, expected {KIND!r})")
        return cls(payload["features"], payload["mean"], payload["scale"], payload["coef"], payload["intercept"],
                   draft=payload.get("draft"))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "feature_router.json").write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "FeatureRouter":
        path = Path(directory) / "feature_router.json"
        if not path.exists():
            raise FileNotFoundError(f"feature router weights not found: {path}")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (KeyError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None


def model_identity(model_cfg: ModelConfig) -> dict:
    """What names a model: its path, the model name its server answers to, and the
    fingerprint of the local checkpoint at its path (None for a hub id or a remote one)."""
    return {"path": model_cfg.path, "model": model_cfg.model, "fingerprint": path_fingerprint(model_cfg.path)}


def same_model(recorded: dict, current: dict) -> bool:
    """Fingerprints decide where both are known (a copy elsewhere is the same model,
    retrained weights at the same path are not); otherwise a shared path or model name."""
    if recorded.get("fingerprint") and current.get("fingerprint"):
        return recorded["fingerprint"] == current["fingerprint"]
    names = {recorded.get("path"), recorded.get("model")} - {None}
    return bool(names & ({current.get("path"), current.get("model")} - {None}))


def check_fitted_on(recorded: dict | None, model_cfg: ModelConfig | None, *, role: str, router: str, refit: str,
                    allow_foreign: bool, where: str = "models.router") -> None:
    """ConfigError when a router whose features read the `role` model's logprobs was fitted
    on another model than `model_cfg`, unless `allow_foreign`; a warning when it records none.
    `router` names the router kind in messages, `refit` the command that fits it again."""
    if model_cfg is None:
        return
    if recorded is None:
        log.warning("%s: the %s records no %s it was fitted on; its features are standardised on that %s's "
                    "logprobs, so with another %s its scores mean nothing (refit it with `%s`)",
                    where, router, role, role, role, refit)
        return
    if same_model(recorded, model_identity(model_cfg)):
        return
    fitted = recorded.get("model") or recorded.get("path")
    message = (f"{where}: the {router} was fitted on {role} {fitted!r}, but models.{role} is {model_cfg.path!r}"
               f"{' (other weights at the same path)' if fitted == model_cfg.path else ''}; its features are "
               f"standardised on its own {role}'s logprobs, so it would not score this {role}'s steps meaningfully. "
               f"Refit it on this {role} (`{refit}`), or set {where}.allow_foreign_router: true to use it anyway")
    if not allow_foreign:
        raise ConfigError(message)
    log.warning("%s (allowed by allow_foreign_router)", message.split("; its features")[0])


def check_router_draft(router: FeatureRouter, draft_cfg: ModelConfig | None, *, allow_foreign: bool,
                       where: str = "models.router") -> None:
    check_fitted_on(router.draft, draft_cfg, role="draft", router="feature router",
                    refit="arbitrage router train --kind features", allow_foreign=allow_foreign, where=where)
