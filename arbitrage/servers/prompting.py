"""The generator's prefix as the HTTP backend sends it, rendered client side so the
server sees exactly what an in-process model would (the PRMs' inputs are in
servers/prm_input.py, the router's in servers/router_input.py).

Chat prompts (`prompt.format: chat`) are rendered here with the served model's own
tokenizer (`models.<role>.tokenizer`, else `path`, with `gguf_file` for a GGUF) and sent
to `/v1/completions` as plain text: one code path for stop strings, finish reasons and
logprobs on every server. With `prompt.chat_template: server` the server's own template
renders them instead (`chat_messages`, continued over `/v1/chat/completions`), where the
dialect can continue an assistant turn (vLLM, sglang).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from arbitrage.config import ConfigError, ModelConfig, PromptConfig
from arbitrage.servers.token_prompts import render_prompt


def load_tokenizer(model_cfg: ModelConfig, where: str):
    """The served model's tokenizer: `tokenizer` (a directory, hub id or .gguf file), else
    `path` with `gguf_file`; trust_remote_code only when the config says so."""
    name, gguf_file = (model_cfg.tokenizer, None) if model_cfg.tokenizer else (model_cfg.path, model_cfg.gguf_file)
    if gguf_file is None and name.endswith(".gguf") and Path(name).is_file():
        name, gguf_file = str(Path(name).parent), Path(name).name
    kwargs = {"trust_remote_code": model_cfg.trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception as error:  # transformers raises OSError, ValueError, HF hub errors...
        shown = f"{name!r} with gguf_file {gguf_file!r}" if gguf_file else repr(name)
        raise ConfigError(
            f"{where}: could not load the tokenizer {shown} ({type(error).__name__}: {str(error)[:200]}); "
            f"set {where}.tokenizer to a local directory holding the served model's tokenizer (or its .gguf file), "
            f"or {where}.gguf_file to the GGUF in {where}.path"
            + (f", or {where}.prompt.chat_template: server where the server applies its own template"
               if model_cfg.prompt.format == "chat" or model_cfg.prm_style == "judge" else "")
        ) from None


def _adds_bos(tokenizer) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos_id


def strip_added_bos(tokenizer, text: str) -> str:
    """A rendered chat text as a server should get it: the server tokenizes the prompt
    with special tokens, so a template that already starts with BOS (Llama 3) would get
    two. A template without BOS for a tokenizer that adds one cannot be matched through
    text; no common chat model is built that way."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        return text[len(bos):]
    return text


class PrefixRenderer:
    """`prompt(problem)` followed by each accepted step and the separator."""

    def __init__(self, prompt: PromptConfig, separator: str, tokenizer=None):
        self.prompt = prompt
        self.separator = separator
        self.tokenizer = tokenizer

    def head(self, problem: str) -> str:
        if self.prompt.format == "raw" or self.tokenizer is None:
            return self.prompt.render(problem)
        # The same rendering as the in-process generator.
        return strip_added_bos(self.tokenizer, render_prompt(self.tokenizer, self.prompt, problem))

    def render(self, problem: str, steps: Sequence[str]) -> str:
        return self.head(problem) + "".join(step + self.separator for step in steps)


def parse_raw_prefix(prompt: PromptConfig, separator: str, text: str) -> tuple[str, list[str]]:
    """Invert `PrefixRenderer.render` for a raw-format prompt (our server's fallback when a
    plain OpenAI client sends only `prompt`). Raises ValueError when the text does not fit."""
    before, _, after = prompt.template.partition("{problem}")
    if not text.startswith(before):
        raise ValueError(f"the prompt does not start with the template's opening {before!r}")
    if not after:
        raise ValueError("the template ends with {problem}, so the problem cannot be told from the steps")
    rest = text[len(before) :]
    # The first template tail after the problem that leaves whole separator-ended steps.
    start = 0
    while True:
        cut = rest.find(after, start)
        if cut < 0:
            raise ValueError(f"the prompt does not contain the template's closing {after!r} followed by whole steps")
        tail = rest[cut + len(after) :]
        if tail == "" or tail.endswith(separator):
            steps = tail.split(separator)[:-1] if tail else []
            return rest[:cut], steps
        start = cut + 1


def chat_messages(prompt: PromptConfig, problem: str, steps: Sequence[str], separator: str) -> list[dict]:
    """The prefix as chat turns for a server's own template: the template text as the user
    turn, then the steps so far, each followed by the separator, as the assistant turn."""
    messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
    messages.append({"role": "user", "content": prompt.render(problem)})
    if steps:
        messages.append({"role": "assistant", "content": "".join(step + separator for step in steps)})
    return messages
