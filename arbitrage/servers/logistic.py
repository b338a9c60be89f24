"""The standardised logistic model both fitted routers are: named features, each centred and
scaled, a weighted sum and a sigmoid. Saved as JSON (no pickle) with `weights_json`."""

from __future__ import annotations

import math
from typing import Collection, Sequence


class StandardizedLogistic:
    def __init__(self, features: Sequence[str], mean: Sequence[float], scale: Sequence[float],
                 coef: Sequence[float], intercept: float, *, known: Collection[str], what: str):
        """`known`: the feature names this kind of model can compute; `what` names it in errors."""
        unknown = [name for name in features if name not in known]
        if unknown or not features:
            raise ValueError(f"{what}: unknown features {unknown or '(none given)'}; known: {', '.join(known)}")
        if not (len(features) == len(mean) == len(scale) == len(coef)):
            raise ValueError(f"{what}: {len(features)} features but {len(mean)} means, {len(scale)} scales "
                             f"and {len(coef)} coefficients")
        self.features = tuple(features)
        self.mean, self.scale, self.coef, self.intercept = list(mean), list(scale), list(coef), float(intercept)

    def logistic(self, values: Sequence[float]) -> float:
        """P(1) for feature values in `self.features` order."""
        z = self.intercept + sum(c * (x - m) / s for c, x, m, s in zip(self.coef, values, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def weights_json(self) -> dict:
        return {"features": list(self.features), "mean": self.mean, "scale": self.scale, "coef": self.coef,
                "intercept": self.intercept}
