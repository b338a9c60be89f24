"""The token ids a generator continues: rendered prompt plus the accepted steps.

Kept apart from the decode loop so training code can build exactly the same inputs.
"""

from __future__ import annotations

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
