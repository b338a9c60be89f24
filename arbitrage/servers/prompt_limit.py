"""The longest problem a run accepts, checked before any model sees it.

A problem whose prompt is over `limits.max_prompt_tokens` ends in that problem's error
record ("problem is N tokens, limit M") instead of a forward over the whole text, which
for a problem of megabytes takes tens of GB. Characters are counted first: a text over
CHARS_PER_TOKEN times the limit is refused without tokenizing it, so a huge string is
never tokenized whole; only texts below that are tokenized and counted exactly.

Without `max_prompt_tokens` the limit is the generators' context length less
`max_step_tokens` (room to write a step). A generator reports its context through an
optional `context_length()` and counts a prompt through `prompt_tokens(problem)` (the
in-process transformers backend has both); when none reports a context (a model
server), DEFAULT_PROMPT_TOKENS applies and the server's own limit decides the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from arbitrage.config import Config
from arbitrage.errors import InputError

CHARS_PER_TOKEN = 8  # generous: tokenizers average about 4 characters per token on text and math
DEFAULT_PROMPT_TOKENS = 32_768
LIMIT_FIELD = "limits.max_prompt_tokens"


class PromptTooLongError(InputError):
    """A problem longer than the run's prompt limit; the message gives its size and the limit."""


@dataclass(frozen=True)
class PromptLimit:
    max_tokens: int
    counters: tuple[Callable[[str], int], ...] = ()

    @property
    def max_chars(self) -> int:
        return CHARS_PER_TOKEN * self.max_tokens

    def check(self, problem: str) -> None:
        """Raise PromptTooLongError when `problem` does not fit."""
        if len(problem) > self.max_chars:
            raise PromptTooLongError(
                f"problem is {len(problem):,} characters, over the {self.max_chars:,} that {LIMIT_FIELD} "
                f"{self.max_tokens} allows ({CHARS_PER_TOKEN} per token); refused without tokenizing it"
            )
        for count in self.counters:
            tokens = count(problem)
            if tokens > self.max_tokens:
                raise PromptTooLongError(f"problem is {tokens} tokens, limit {self.max_tokens} ({LIMIT_FIELD})")


def prompt_limit(config: Config, generators: Iterable[object]) -> PromptLimit:
    """The limit for a run whose generators (draft, target; None for a role not loaded,
    a batching wrapper stands for its `inner` model) are given."""
    models = {id(m): m for m in (getattr(g, "inner", g) for g in generators if g is not None)}.values()
    counters = tuple(m.prompt_tokens for m in models if callable(getattr(m, "prompt_tokens", None)))
    if config.limits.max_prompt_tokens is not None:
        return PromptLimit(config.limits.max_prompt_tokens, counters)
    contexts = [m.context_length() for m in models if callable(getattr(m, "context_length", None))]
    contexts = [c for c in contexts if c]
    if not contexts:
        return PromptLimit(DEFAULT_PROMPT_TOKENS, counters)
    context = min(contexts)
    return PromptLimit(max(context // 2, context - config.limits.max_step_tokens), counters)


def model_context_length(model_config, tokenizer) -> int | None:
    """A transformers model's context in tokens: its position limit, else the tokenizer's
    `model_max_length` when that is a real number (unset, transformers puts 1e30 there)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**8:
        return value
    return None
