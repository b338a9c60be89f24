"""The PRMs' input formats (servers/prm_input.py), shared by the in-process PRMs and the
HTTP client: the Qwen layout written out without a tokenizer is the one the ChatML chat
template renders, last-token texts end where the newest reward sits, and token ids mark
every step's reward position."""

from __future__ import annotations

import pytest

import tiny_models as tm
from arbitrage.servers.prm_input import QWEN_STEP_TAG, QWEN_SYSTEM, PrmInput, qwen_text, skywork_text

SEP = "\n\n"
# ChatML, the layout of Qwen2's chat template (which the released Qwen2.5-Math-PRMs ship).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chatml_tokenizer():
    tokenizer = tm.char_tokenizer()
    tokenizer.chat_template = CHATML
    return tokenizer


@pytest.mark.parametrize("system", [None, "Be careful."])
def test_qwen_layout_written_out_is_what_the_chat_template_renders(system):
    steps = ["Add 2 and 3.", "So \\boxed{5}."]
    written = qwen_text("2+3?", steps, system)
    assert written == qwen_text("2+3?", steps, system, chatml_tokenizer())
    assert written.startswith(f"<|im_start|>system\n{system or QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n2+3?<|im_end|>\n")


def test_qwen_without_a_chat_template_is_the_problem_then_the_tagged_steps():
    assert qwen_text("p", ["a", "b"], None, tm.char_tokenizer()) == "p\na<extra_0>b<extra_0>"


def test_last_token_texts_end_at_the_newest_reward():
    qwen = PrmInput("qwen", SEP).last_token_text("p", ["a", "b"])
    assert qwen.endswith("<|im_start|>assistant\na<extra_0>b<extra_0>")
    assert PrmInput("skywork", SEP).last_token_text("p", ["a", "b"]) == skywork_text("p", ["a", "b"], SEP) == "p\na\n\nb\n\n"
    with pytest.raises(ValueError, match="prm_style 'judge' has no text format"):
        PrmInput("judge", SEP).last_token_text("p", ["a"])


def test_token_ids_mark_each_steps_reward_position():
    tokenizer = chatml_tokenizer()
    ids, tags = PrmInput("qwen", SEP, tokenizer=tokenizer).token_ids("2+3?", ["Add.", "Five."])
    assert len(tags) == 2 and all(ids[i] == tm.EXTRA0_ID for i in tags)
    assert tokenizer.decode(ids[: tags[0] + 1]).endswith("Add." + QWEN_STEP_TAG)
    ids, ends = PrmInput("skywork", SEP, tokenizer=tokenizer).token_ids("2+3?", ["Add.", "Five."])
    assert ids[0] == tm.BOS_ID and ends == [len(ids) - 1 - len("Five." + SEP), len(ids) - 1]
    with pytest.raises(ValueError, match="need the served model's tokenizer"):
        PrmInput("qwen", SEP).token_ids("p", ["a"])
