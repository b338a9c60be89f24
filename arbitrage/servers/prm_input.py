"""What a PRM reads, per checkpoint convention: one definition shared by the in-process
PRMs (transformers_backend/prm.py) and the HTTP client (servers/wire/), so a reward
read over HTTP comes from the tokens the in-process PRM would score.

- `skywork`: `bos + problem + "\\n"`, then each step followed by the separator; a
  step's reward sits at the last token of its `step + separator` segment.
- `qwen` (Qwen2.5-Math-PRM, model card at huggingface.co/Qwen/Qwen2.5-Math-PRM-7B): the
  chat layout with the card's system prompt, the problem as the user turn and the steps,
  each followed by the step tag `<extra_0>`, as the assistant turn; a step's reward sits
  at its tag.
- `judge`: a causal LM asked whether the latest step is correct (`JUDGE_QUESTION`), as
  the user turn of its chat template when its tokenizer has one, else as plain text
  followed by "\nAnswer:"; reward = P(Yes) / (P(Yes) + P(No)) over the next token, each
  answer the sum over its spellings `JUDGE_YES` / `JUDGE_NO`.

The router's input lives beside this, in servers/router_input.py.
"""

from __future__ import annotations

from typing import Sequence

QWEN_STEP_TAG = "<extra_0>"
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
JUDGE_QUESTION = (
    "Here is a math problem and a partial solution. Decide whether the latest step is correct.\n\n"
    "Problem:\n{problem}\n\n"
    "Previous steps:\n{previous}\n\n"
    "Latest step:\n{step}\n\n"
    "Is the latest step correct? Answer Yes or No."
)
JUDGE_YES = ("Yes", " Yes", "yes", " yes")
JUDGE_NO = ("No", " No", "no", " no")


def skywork_text(problem: str, steps: Sequence[str], separator: str) -> str:
    """The Skywork input as text, without BOS (a server's tokenizer adds it)."""
    return problem + "\n" + "".join(step + separator for step in steps)


def skywork_input_ids(tokenizer, problem: str, steps: Sequence[str], separator: str) -> tuple[list[int], list[int]]:
    """(ids, index of the last token of each step + separator segment).

    Segments are tokenized one by one and concatenated, so the reward positions are
    exact even where a tokenizer would merge across a step boundary.
    """
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids += tokenizer(problem + "\n", add_special_tokens=False)["input_ids"]
    positions = []
    for step in steps:
        ids += tokenizer(step + separator, add_special_tokens=False)["input_ids"]
        positions.append(len(ids) - 1)
    return ids, positions


def qwen_text(problem: str, steps: Sequence[str], system: str | None = None, tokenizer=None) -> str:
    """The Qwen PRM input as text.

    - A tokenizer with a chat template renders the layout itself (the released
      checkpoints ship Qwen2's ChatML template).
    - Without a tokenizer (an HTTP client whose server holds it) the ChatML layout that
      template renders is written out, so sglang and vLLM see the model card's input.
    - A tokenizer without a chat template has no ChatML tokens to read the markup with:
      the problem, a newline, then the tagged steps.
    """
    system = system or QWEN_SYSTEM
    answer = "".join(step + QWEN_STEP_TAG for step in steps)
    if tokenizer is None:
        return (
            f"<|im_start|>system\n{system}<|im_end|>\n"
            f"<|im_start|>user\n{problem}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}<|im_end|>\n"
        )
    if getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": problem},
            {"role": "assistant", "content": answer},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    return f"{problem}\n{answer}"


def qwen_input_ids(tokenizer, problem: str, steps: Sequence[str], system: str | None) -> tuple[list[int], list[int]]:
    """(ids, index of each step tag)."""
    ids = list(tokenizer(qwen_text(problem, steps, system, tokenizer), add_special_tokens=False)["input_ids"])
    tag = tokenizer.convert_tokens_to_ids(QWEN_STEP_TAG)
    return ids, [i for i, token in enumerate(ids) if token == tag]


def judge_question(problem: str, steps: Sequence[str]) -> str:
    """The judge's question about the last of `steps`."""
    return JUDGE_QUESTION.format(problem=problem, previous="\n\n".join(steps[:-1]) or "(none)", step=steps[-1])


def judge_messages(problem: str, steps: Sequence[str], system: str | None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": judge_question(problem, steps)})
    return messages


def judge_text(problem: str, steps: Sequence[str], system: str | None, tokenizer=None) -> tuple[str, bool]:
    """(the judge's prompt as text, whether the tokenizer's special tokens such as BOS are
    still to be added). A tokenizer with a chat template renders the question as the user
    turn, which carries its own special tokens; otherwise the plain question."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(judge_messages(problem, steps, system), add_generation_prompt=True, tokenize=False)
        return text, False
    return judge_question(problem, steps) + "\nAnswer:", True


class PrmInput:
    """One PRM's input for a scoring server: the text whose last token carries the newest
    step's reward (for last-token pooling), or token ids with every step's reward position
    (for per-token rows, which needs the served model's tokenizer)."""

    STYLES = ("skywork", "qwen")  # read at a scoring endpoint; a judge's question goes to completions

    def __init__(self, style: str, separator: str, *, system: str | None = None, tokenizer=None,
                 chat_on_server: bool = False):
        self.style, self.separator, self.system, self.tokenizer = style, separator, system, tokenizer
        self.chat_on_server = chat_on_server  # judge: the server applies its own chat template

    def last_token_text(self, problem: str, steps: Sequence[str]) -> str:
        if self.style == "skywork":
            return skywork_text(problem, steps, self.separator)
        if self.style == "qwen":
            text = qwen_text(problem, steps, self.system, self.tokenizer)
            cut = text.rfind(QWEN_STEP_TAG)
            return text[: cut + len(QWEN_STEP_TAG)] if cut >= 0 else text
        raise ValueError(f"prm_style {self.style!r} has no text format for a scoring endpoint")

    def token_ids(self, problem: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        if self.tokenizer is None:
            raise ValueError("token ids need the served model's tokenizer")
        if self.style == "skywork":
            return skywork_input_ids(self.tokenizer, problem, steps, self.separator)
        if self.style == "qwen":
            return qwen_input_ids(self.tokenizer, problem, steps, self.system)
        raise ValueError(f"prm_style {self.style!r} has no token format for a scoring endpoint")
