"""Tokenizer round trip and the shipped lab models (load with Auto classes, generate a step)."""

import pytest
import torch

from arbitrage.lab import WEIGHTS_DIR, lab_model_dir
from arbitrage.lab.tokenizer import BOS_ID, build_tokenizer, encode

TEXT = "Question: Ann has  34 apples.\nAnswer:\n3 * 12 = 36.\n\nAdds them: 34 + 36 = 70. \\boxed{70}~"


def test_tokenizer_round_trip(tmp_path):
    from transformers import AutoTokenizer

    build_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = tok(TEXT)["input_ids"]
    assert ids == [BOS_ID] + encode(TEXT)
    assert tok.decode(ids, skip_special_tokens=True) == TEXT
    assert tok.decode(tok(TEXT, add_special_tokens=False)["input_ids"]) == TEXT
    assert len(ids) == len(TEXT) + 1


def _shipped(name):
    if not (WEIGHTS_DIR / name / "model.safetensors").is_file():
        pytest.skip(f"lab model {name} not shipped")
    return lab_model_dir(f"lab:{name}")


@pytest.mark.parametrize("name", ["draft", "target"])
def test_shipped_lm_loads_and_writes_a_step(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arbitrage.lab.checker import check_step
    from arbitrage.lab.generation import generate_steps
    from arbitrage.lab.task import format_prompt

    path = _shipped(name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    problem = "Ann has 34 apples. Ann buys 3 bags of 12 apples. Ann sells 20 apples. How many apples does Ann have now?"
    ids = tok(format_prompt(problem), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "=" in text.split("\n\n")[0]
    step = generate_steps(model, [problem], [[]], max_new_tokens=60)[0]
    assert step.finish_reason == "separator"
    assert step.text == text.split("\n\n")[0]
    if name == "target":
        assert check_step(problem, [], step.text).correct


def test_shipped_prm_scores_steps():
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from arbitrage.lab.generation import prm_step_rewards

    path = _shipped("prm")
    AutoTokenizer.from_pretrained(path)
    prm = AutoModelForTokenClassification.from_pretrained(path).eval()
    assert prm.config.num_labels == 1
    problem = "Ann has 34 apples. Ann buys 3 bags of 12 apples. Ann sells 20 apples. How many apples does Ann have now?"
    good = ["3 bags of 12: 3 * 12 = 36.", "Adds them: 34 + 36 = 70."]
    bad = ["3 bags of 12: 3 * 12 = 36.", "Adds them: 34 + 36 = 90."]
    (r_good, r_bad) = prm_step_rewards(prm, [(problem, good), (problem, bad)])
    assert len(r_good) == 2 and len(r_bad) == 2
    assert all(0.0 <= r <= 1.0 for r in r_good + r_bad)
    # the shipped PRM is weak (see MODEL_CARD.md), so no ordering is asserted here


def test_lab_oracle_counts_only_target_steps_that_differ_as_escalations():
    from arbitrage.lab.evaluate import load_lab_models, run_oracle
    from arbitrage.lab.generation import generate_solutions, split_steps
    from arbitrage.lab.task import make_splits

    for name in ("draft", "target", "prm"):
        _shipped(name)
    draft, target, prm = load_lab_models()
    problems = make_splits(0, n_train=0)[2][:2]
    # A model against itself ties at every step: nothing to escalate, whatever tau.
    (same,) = run_oracle(draft, draft, prm, problems, taus=[-0.5])
    assert same["escalation_rate"] == 0.0 and same["steps"] > 0
    # At tau -1 every step is the target's text, so the solutions are the target's own,
    # yet only the steps where the draft wrote something else count as escalations.
    (always,) = run_oracle(draft, target, prm, problems, taus=[-1.0])
    target_steps = sum(len(split_steps(s)) for s in generate_solutions(target, [p.problem for p in problems]))
    assert always["steps"] == target_steps
    assert 0.0 < always["escalation_rate"] < 1.0
