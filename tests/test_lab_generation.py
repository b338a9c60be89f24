"""The static KV cache that lab generation uses writes the same tokens as the dynamic one."""

import pytest
from transformers import AutoModelForCausalLM

from arbitrage.lab import WEIGHTS_DIR, lab_model_dir
from arbitrage.lab.generation import generate_solutions, generate_steps
from arbitrage.lab.task import make_splits


@pytest.fixture(scope="module")
def draft():
    if not (WEIGHTS_DIR / "draft" / "model.safetensors").is_file():
        pytest.skip("lab draft not shipped")
    return AutoModelForCausalLM.from_pretrained(lab_model_dir("lab:draft")).eval()


@pytest.fixture(scope="module")
def problems():
    _, _, test = make_splits(0, n_train=0, n_validation=0, n_test=6)
    return test


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_static_cache_writes_the_same_solutions(draft, problems, temperature):
    texts = [p.problem for p in problems]
    # Batches of 4 mix prompt lengths, so left padding is exercised.
    kwargs = dict(temperature=temperature, batch_size=4, max_new_tokens=80)
    static = generate_solutions(draft, texts, seed=3, cache="static", **kwargs)
    dynamic = generate_solutions(draft, texts, seed=3, cache="dynamic", **kwargs)
    assert static == dynamic
    assert all("=" in s for s in static)
    if temperature > 0:  # the seed is honoured, not ignored
        assert generate_solutions(draft, texts, seed=4, **kwargs) != static


def test_static_cache_writes_the_same_steps(draft, problems):
    texts = [p.problem for p in problems]
    prefixes = [list(p.steps[:1]) for p in problems]
    static = generate_steps(draft, texts, prefixes, batch_size=4, cache="static")
    dynamic = generate_steps(draft, texts, prefixes, batch_size=4, cache="dynamic")
    assert static == dynamic
    assert {s.finish_reason for s in static} <= {"separator", "eos"}
