"""The target-verified router: the target's own log-probabilities of the pending draft
step, read in one prefill (`score_continuation`), next to the draft's, through a
standardised logistic model.

The target model is not asked to write anything: one forward over the draft step's
tokens tells how likely the target finds each token. A draft token the target finds
unlikely is where the two models disagree, and on the lab models that is where the draft
is wrong. With a `session`, the forward reuses the target's KV cache of the problem, and
an escalated step reuses it in turn.

The separator: `score_continuation` scores it after the step too (one entry), since the
target's probability of ending the step there is a signal of its own, and feeding it
leaves the target's cache holding the whole accepted step for the next call. It is a
feature only where the draft did end on it (a final step ends on EOS, which the target
expects there instead). On the lab models it alone ranks wrong steps at chance
(validation AUROC 0.504: the draft's steps end where the target's would).

Cascade: with `cascade_low` set, the zero-cost feature router saved inside the weights
(for `lab:router-prefill`, the shipped `lab:router-features`) scores first; a step it
scores below `cascade_low` is accepted with no prefill (score 0: no threshold in [0, 1]
escalates it), and only the rest pay for the target's forward.

Weights are JSON (no pickle): the feature names, their standardisation, the
coefficients, the label the model was fitted on, the cascade's feature router, and the
draft and target it was fitted on (`model_identity`): its features read both models'
logprobs, so loading beside other models is refused unless `allow_foreign_router`.
Fitting lives in arbitrage/router/fit_prefill.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from arbitrage.protocols import ContinuationScorer, RouterQuery, RouterScore
from arbitrage.servers.feature_router import FEATURE_FUNCTIONS as DRAFT_FEATURES
from arbitrage.servers.feature_router import (
    DraftSignals, FeatureRouter, check_fitted_on, check_router_draft, query_signals, row_signals,
)
from arbitrage.servers.logistic import StandardizedLogistic

KIND = "arbitrage-target-prefill-router"
WEIGHTS_FILE = "prefill_router.json"
# A token the target gives less than this probability counts as one it finds unlikely.
UNLIKELY_LOGPROB = math.log(0.1)


class PrefillSignals(NamedTuple):
    draft: DraftSignals
    target_logprobs: list[float]  # the target's, one per token of the draft step's text
    target_end_logprob: float  # log P(separator | prefix + step); 0 when the step did not end on it


def _gaps(s: PrefillSignals) -> list[float]:
    """Per token, how much more likely the draft found it than the target (same tokenizer:
    the positions align; otherwise the shorter list decides)."""
    return [d - t for d, t in zip(s.draft.logprobs, s.target_logprobs)] or [0.0]


def _target(s: PrefillSignals) -> list[float]:
    return s.target_logprobs or [0.0]


PREFILL_FEATURES: dict[str, Callable[[PrefillSignals], float]] = {
    "target_logprob_mean": lambda s: sum(_target(s)) / len(_target(s)),
    "target_logprob_min": lambda s: min(_target(s)),
    "target_logprob_sum": lambda s: sum(s.target_logprobs),
    "target_unlikely_tokens": lambda s: math.log1p(sum(lp < UNLIKELY_LOGPROB for lp in s.target_logprobs)),
    "target_end_logprob": lambda s: s.target_end_logprob,
    "gap_max": lambda s: max(_gaps(s)),
    "gap_mean": lambda s: sum(_gaps(s)) / len(_gaps(s)),
    **{f"draft_{name}": (lambda s, f=f: f(s.draft._replace(logprobs=list(s.draft.logprobs) or [0.0])))
       for name, f in DRAFT_FEATURES.items()},
}
FEATURES = tuple(PREFILL_FEATURES)


def split_scores(values: Sequence[float], ended_on_separator: bool) -> tuple[list[float], float]:
    """`score_continuation`'s list as (the step's token logprobs, the end's logprob)."""
    values = list(values)
    if not values:
        raise ValueError("score_continuation returned no values; expected the step's tokens and the separator")
    return values[:-1], (values[-1] if ended_on_separator else 0.0)


def features_of(signals: PrefillSignals, names: Sequence[str] = FEATURES) -> list[float]:
    return [PREFILL_FEATURES[name](signals) for name in names]


# --- router rows ------------------------------------------------------------------------

TARGET_LOGPROBS_FIELD = "target_prefill_logprobs"


def row_ended_on_separator(row: dict) -> bool:
    """Rows record how the draft step ended; rows from before that was recorded end on the
    separator unless the step holds the final answer (then the draft wrote EOS)."""
    reason = row.get("draft_finish_reason")
    if reason is not None:
        return reason == "separator"
    return "\\boxed{" not in row["draft_step"]


def row_prefill_signals(row: dict) -> PrefillSignals:
    if TARGET_LOGPROBS_FIELD not in row:
        raise ValueError(f"router row {row.get('problem_id')!r} step {row.get('step_index')} has no "
                         f"'{TARGET_LOGPROBS_FIELD}'; add them with router.fit_prefill.add_target_logprobs")
    tokens, end = split_scores(row[TARGET_LOGPROBS_FIELD], row_ended_on_separator(row))
    return PrefillSignals(row_signals(row), tokens, end)


# --- the model --------------------------------------------------------------------------


class PrefillModel(StandardizedLogistic):
    """A standardised logistic model over named prefill features."""

    def __init__(self, features: Sequence[str], mean: Sequence[float], scale: Sequence[float],
                 coef: Sequence[float], intercept: float):
        super().__init__(features, mean, scale, coef, intercept, known=PREFILL_FEATURES, what="prefill router")

    def probability(self, signals: PrefillSignals) -> float:
        return self.logistic(features_of(signals, self.features))


# --- the router ---------------------------------------------------------------------------


class PrefillRouter:
    """Router protocol: P(escalate) from the target's prefill of the draft step.

    `target` is the loaded target generator (any backend with `score_continuation`);
    `cascade_low` (None: off) accepts a step without a prefill when the cascade's
    feature router scores it below that."""

    def __init__(self, model: PrefillModel, target: ContinuationScorer, separator: str, *,
                 cascade: FeatureRouter | None = None, cascade_low: float | None = None, label: str = "delta"):
        if not hasattr(target, "score_continuation"):
            raise ValueError(f"the target-prefill router needs a target that can score a continuation; "
                             f"{type(target).__name__} cannot")
        if cascade_low is not None and cascade is None:
            raise ValueError("cascade_low is set but the router's weights hold no cascade feature router")
        self.model, self.target, self.separator = model, target, separator
        self.cascade, self.cascade_low, self.label = cascade, cascade_low, label

    def with_target(self, target: ContinuationScorer) -> "PrefillRouter":
        """The same router reading another handle of the target (e.g. its batching wrapper)."""
        return PrefillRouter(self.model, target, self.separator, cascade=self.cascade, cascade_low=self.cascade_low,
                             label=self.label)

    def score(self, query: RouterQuery) -> float:
        return self.score_detailed(query).score

    def score_detailed(self, query: RouterQuery) -> RouterScore:
        if self.cascade_low is not None and self.cascade.score(query) < self.cascade_low:
            return RouterScore(0.0, prefill_calls=0)
        values = self.target.score_continuation(
            query.problem, [step.text for step in query.previous_steps], query.draft.text, session=query.session
        )
        tokens, end = split_scores(values, query.draft.finish_reason == "separator")
        return RouterScore(self.model.probability(PrefillSignals(query_signals(query), tokens, end)), prefill_calls=1)

    def score_row(self, row: dict) -> float:
        """The router's score of a router row carrying the target's prefill logprobs (no cascade)."""
        return self.model.probability(row_prefill_signals(row))


class FittedOn(NamedTuple):
    """`model_identity` of the draft and the target a prefill router was fitted on (None: not recorded)."""

    draft: dict | None = None
    target: dict | None = None


def save_prefill_router(directory: str | Path, model: PrefillModel, *, label: str,
                        cascade: FeatureRouter | None, fitted_on: FittedOn = FittedOn(),
                        training: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"kind": KIND, "label": label, **model.weights_json(),
               "cascade": cascade.to_json() if cascade is not None else None,
               "draft": fitted_on.draft, "target": fitted_on.target, "training": training or {}}
    path = directory / WEIGHTS_FILE
    path.write_text(json.dumps(payload, indent=2))
    return path


def load_prefill_weights(directory: str | Path) -> tuple[PrefillModel, FeatureRouter | None, str, FittedOn]:
    path = Path(directory) / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"target-prefill router weights not found: {path}")
    payload = json.loads(path.read_text())
    if payload.get("kind") != KIND:
        raise ValueError(f"{path} is not a target-prefill router (kind {payload.get('kind')!r}, expected {KIND!r})")
    try:
        model = PrefillModel(payload["features"], payload["mean"], payload["scale"], payload["coef"], payload["intercept"])
        cascade = FeatureRouter.from_json(payload["cascade"]) if payload.get("cascade") else None
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    return model, cascade, payload.get("label", "delta"), FittedOn(payload.get("draft"), payload.get("target"))


def load_prefill_router(model_cfg, config, target, where: str = "models.router") -> PrefillRouter:
    """Backend hook for `router_kind: target_prefill` (path may be lab:NAME); `target` is
    the run's loaded target model."""
    from arbitrage.servers.transformers_backend.loading import resolve_path

    if target is None:
        raise ValueError("models.router: router_kind 'target_prefill' reads the target model, but none is loaded")
    model, cascade, label, fitted_on = load_prefill_weights(resolve_path(model_cfg.path, "router"))
    if model_cfg.cascade_low is not None and cascade is None:
        raise ValueError(f"models.router.cascade_low is set but {model_cfg.path} holds no cascade feature router")
    refit = "arbitrage router train --kind target_prefill"
    for role, recorded in (("draft", fitted_on.draft), ("target", fitted_on.target)):
        check_fitted_on(recorded, getattr(config.models, role), role=role, router="target-prefill router",
                        refit=refit, allow_foreign=model_cfg.allow_foreign_router, where=where)
    if model_cfg.cascade_low is not None:
        check_router_draft(cascade, config.models.draft, allow_foreign=model_cfg.allow_foreign_router,
                           where=f"{where} (its cascade)")
    return PrefillRouter(model, target, config.separator, cascade=cascade, cascade_low=model_cfg.cascade_low,
                         label=label)
