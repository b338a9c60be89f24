"""The token ids a model continues: rendered prompt plus the accepted steps, and the ids
`score_continuation` feeds. Tokenizer-only, so the in-process backend, the HTTP client
(which sends sglang and vLLM these ids) and the agents build exactly the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from arbitrage.config import PromptConfig


def render_prompt(tokenizer, prompt: PromptConfig, problem: str) -> str:
    """`raw`: the template text; `chat`: the template as the user turn of the chat template."""
    if prompt.format == "raw":
        return prompt.render(problem)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt.format is 'chat' but the tokenizer has no chat template")
    messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
    messages.append({"role": "user", "content": prompt.render(problem)})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prefix_text(tokenizer, prompt: PromptConfig, problem: str, steps: Sequence[str], separator: str) -> str:
    return render_prompt(tokenizer, prompt, problem) + "".join(step + separator for step in steps)


def prefix_ids(tokenizer, prompt: PromptConfig, problem: str, steps: Sequence[str], separator: str) -> list[int]:
    """Raw prompts get the tokenizer's usual specials (e.g. BOS); a chat template already has its own."""
    text = prefix_text(tokenizer, prompt, problem, steps, separator)
    return list(tokenizer(text, add_special_tokens=prompt.format == "raw")["input_ids"])


@dataclass(frozen=True)
class ContinuationTokens:
    """What `score_continuation` feeds: the prefix's ids, then the continuation's text and
    the separator, each tokenized on its own (as the model writes them after the prefix)."""

    ids: list[int]
    prefix_len: int
    text_len: int

    @property
    def scored(self) -> int:
        """How many of the last ids are scored: the text's and the separator's."""
        return len(self.ids) - self.prefix_len

    def fold(self, values: Sequence[float]) -> list[float]:
        """Per-token logprobs of the scored ids -> the text's, then the separator's as one sum."""
        values = [float(v) for v in values]
        return values[: self.text_len] + [sum(values[self.text_len :])]


def continuation_tokens(tokenizer, prompt: PromptConfig, problem: str, steps: Sequence[str], text: str,
                        separator: str) -> ContinuationTokens:
    prefix = prefix_ids(tokenizer, prompt, problem, steps, separator)
    if not prefix:
        raise ValueError("the rendered prompt is empty; nothing to condition on")
    text_ids = _plain_ids(tokenizer, text)
    separator_ids = _plain_ids(tokenizer, separator)
    if not separator_ids:
        raise ValueError(f"the separator {separator!r} tokenizes to nothing; cannot score the step's end")
    return ContinuationTokens(prefix + text_ids + separator_ids, len(prefix), len(text_ids))


def _plain_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
