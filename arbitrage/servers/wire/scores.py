"""Scores in replies: a model head's raw outputs turned into a probability the way the
in-process models read theirs, or a probability a server sent, checked."""

from __future__ import annotations

import math
from typing import Any

from arbitrage.servers.http_client import BackendError
from arbitrage.servers.wire.fields import is_kind, short


def probability(row: list[float], where: str, url: str) -> float:
    """One value -> sigmoid (Skywork value head, one-logit classifiers); two -> softmax
    index 1 (Qwen2.5-Math-PRM, 2-class routers); K > 2 ordinal advantage bins -> the
    softmax mass above the middle class (transformers_backend/router.py escalation_probability)."""
    if not row:
        raise BackendError(f"{url}: {where} is empty")
    if len(row) == 1:
        value = row[0]
        return 1.0 / (1.0 + math.exp(-value)) if value >= 0 else math.exp(value) / (1.0 + math.exp(value))
    high = max(row)
    exps = [math.exp(value - high) for value in row]
    return sum(exps[(len(row) + 1) // 2 :]) / sum(exps)


def unit_interval(value: Any, where: str, url: str) -> float:
    if not is_kind(value, float) or not (0.0 <= value <= 1.0):
        raise BackendError(f"{url}: reply field '{where}' should be a probability in [0, 1], got {short(value)}")
    return float(value)
