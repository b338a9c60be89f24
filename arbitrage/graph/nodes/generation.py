"""What the draft and target nodes share: the token budget of the next step."""

from __future__ import annotations

from arbitrage.config import Limits
from arbitrage.graph.state import SolveState


def accepted_texts(state: SolveState) -> list[str]:
    return [step["text"] for step in state.get("steps", [])]


def step_token_budget(state: SolveState, limits: Limits) -> int:
    """The per-step cap, shrunk so the committed solution stays within max_total_tokens."""
    committed = state.get("counters", {}).get("committed_tokens", 0)
    return max(1, min(limits.max_step_tokens, limits.max_total_tokens - committed))
