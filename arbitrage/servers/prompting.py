"""Texts the HTTP backend sends: the generator's prefix and the PRM's input, per
checkpoint convention, rendered client side so the server sees exactly what an
in-process model would.

Chat prompts (`prompt.format: chat`) are rendered here with the served model's own
tokenizer (`models.<role>.tokenizer`, else `path`) and sent to `/v1/completions` as
plain text. We do not use the chat-completions API with a prefilled assistant turn:
continuing a partial assistant message (`continue_final_message`) is handled
differently by sglang and vLLM chat templates, and completions give one code path for
stop strings, finish reasons and logprobs on every server.
"""

from __future__ import annotations

from typing import Sequence

from arbitrage.config import ConfigError, ModelConfig, PromptConfig

QWEN_PRM_STEP_TAG = "<extra_0>"
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def load_tokenizer(model_cfg: ModelConfig, where: str):
    """The served model's tokenizer; trust_remote_code only when the config says so."""
    name = model_cfg.tokenizer or model_cfg.path
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, trust_remote_code=model_cfg.trust_remote_code)
    except Exception as error:  # transformers raises OSError, ValueError, HF hub errors...
        raise ConfigError(
            f"{where}: could not load the tokenizer {name!r} ({type(error).__name__}: {str(error)[:200]}); "
            f"set {where}.tokenizer to a local directory holding the served model's tokenizer"
        ) from None


def _adds_bos(tokenizer) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos_id


class PrefixRenderer:
    """`prompt(problem)` followed by each accepted step and the separator."""

    def __init__(self, prompt: PromptConfig, separator: str, tokenizer=None):
        self.prompt = prompt
        self.separator = separator
        self.tokenizer = tokenizer
        # The server tokenizes the prompt with special tokens; a chat template that
        # already starts with BOS (Llama 3) would otherwise give two. A template without
        # BOS for a tokenizer that adds one cannot be matched through text; no common
        # chat model is built that way.
        self._strip_bos = tokenizer is not None and _adds_bos(tokenizer)

    def head(self, problem: str) -> str:
        if self.prompt.format == "raw" or self.tokenizer is None:
            return self.prompt.render(problem)
        # The same rendering as the in-process generator.
        from arbitrage.servers.transformers_backend.prompting import render_prompt

        text = render_prompt(self.tokenizer, self.prompt, problem)
        bos = getattr(self.tokenizer, "bos_token", None)
        if self._strip_bos and bos and text.startswith(bos):
            text = text[len(bos) :]
        return text

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


def qwen_prm_text(problem: str, steps: Sequence[str], system: str | None = None, tokenizer=None) -> str:
    """Qwen2.5-Math-PRM input as the in-process backend builds it (the model card's chat
    layout), cut after the last step tag so last-token pooling lands on it. Without a
    tokenizer the Qwen2 chat layout is written out."""
    if tokenizer is not None:
        text = _inprocess_prm().qwen_prm_text(tokenizer, problem, steps, system)
    else:
        answer = "".join(step + QWEN_PRM_STEP_TAG for step in steps)
        text = (
            f"<|im_start|>system\n{system or QWEN_PRM_SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{problem}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}"
        )
    cut = text.rfind(QWEN_PRM_STEP_TAG)
    return text[: cut + len(QWEN_PRM_STEP_TAG)] if cut >= 0 else text


def prm_text(style: str, problem: str, steps: Sequence[str], separator: str, *, system: str | None = None, tokenizer=None) -> str:
    """The text whose last token carries the newest step's reward. Skywork: problem, newline,
    each step followed by the separator (the server's tokenizer adds BOS if it has one)."""
    if style == "skywork":
        return problem + "\n" + "".join(step + separator for step in steps)
    if style == "qwen":
        return qwen_prm_text(problem, steps, system, tokenizer)
    raise ValueError(f"prm_style {style!r} has no text format for a scoring endpoint")


def prm_token_ids(
    tokenizer, style: str, problem: str, steps: Sequence[str], separator: str, *, system: str | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of the whole PRM input and the index of each step's reward token, exactly
    as the in-process PRMs compute them (servers/transformers_backend/prm.py)."""
    prm = _inprocess_prm()
    if style == "skywork":
        return prm.skywork_input_ids(tokenizer, problem, steps, separator)
    if style == "qwen":
        ids = list(tokenizer(prm.qwen_prm_text(tokenizer, problem, steps, system), add_special_tokens=False)["input_ids"])
        tag = tokenizer.convert_tokens_to_ids(QWEN_PRM_STEP_TAG)
        return ids, [i for i, token in enumerate(ids) if token == tag]
    raise ValueError(f"prm_style {style!r} has no token format for a scoring endpoint")


def _inprocess_prm():
    # One definition of each checkpoint's input format, shared with the in-process PRMs.
    from arbitrage.servers.transformers_backend import prm

    return prm
