"""The PRM training data: where a lab step goes wrong, the dense and LM targets built from it, and the loss."""

from arbitrage.lab.error_position import locate_error
from arbitrage.lab.generation import prm_example
from arbitrage.lab.prm_training import dense_targets, make_example, prm_loss
from arbitrage.lab.tokenizer import decode

PROBLEM = ("Ann has 34 apples. Ann buys 3 bags of 12 apples. Ben has 5 apples. Ann sells 20 apples. "
           "How many apples does Ann have now?")
RIGHT = ["3 bags of 12: 3 * 12 = 36.", "Adds them: 34 + 36 = 70.", "Sells 20: 70 - 20 = 50. The answer is \\boxed{50}."]


def _wrong_part(previous, step):
    where = locate_error(PROBLEM, previous, step)
    assert where is not None and where.error is not None
    return step[where.error:]


def test_correct_steps_have_no_error_and_the_equation_start():
    for k, step in enumerate(RIGHT):
        where = locate_error(PROBLEM, RIGHT[:k], step)
        assert where is not None and where.error is None
        assert step[where.equation_start:].startswith(step.split(": ")[1][:4])


def test_error_is_the_first_wrong_character_of_each_part():
    assert _wrong_part([], "3 bags of 12: 3 * 12 = 38.") == "8."  # result, last digit
    assert _wrong_part([], "3 bags of 12: 3 * 12 = 360.") == "0."  # result, one digit too many
    assert _wrong_part([], "3 bags of 12: 3 + 12 = 15.") == "+ 12 = 15."  # operator
    assert _wrong_part([], "3 bags of 12: 4 * 12 = 48.") == "4 * 12 = 48."  # first operand
    assert _wrong_part([], "12 * 4 = 48.") == "4 = 48."  # commutative: 12 is right, so 3 is due
    assert _wrong_part(RIGHT[:1], "Adds them: 34 + 5 = 39.") == "5 = 39."  # distractor operand
    assert _wrong_part(RIGHT[:2], "Sells 20: 70 - 20 = 50. The answer is \\boxed{51}.") == "1}."  # box


def test_carried_mistakes_and_malformed_steps():
    assert locate_error(PROBLEM, ["3 * 12 = 38."], "34 + 38 = 72.").error is None  # judged on its own
    assert _wrong_part(["3 * 12 = 38."], "34 + 36 = 70.") == "6 = 70."
    assert locate_error(PROBLEM, [], "three bags of twelve") is None
    assert locate_error(PROBLEM, RIGHT[:2], "Sells 20: 70 - 20 = 50.") is None  # no box: no single position


def test_dense_targets_cover_each_equation_and_flip_at_the_error():
    steps = ["3 bags of 12: 3 * 12 = 38.", "no equation here", "Sells 20: 38 - 20 = 18. The answer is \\boxed{18}."]
    ids, ends = prm_example(PROBLEM, steps)
    targets = dict(dense_targets(PROBLEM, steps, ends))
    first_eq = ends[0] - len(steps[0] + "\n\n") + 1 + steps[0].index("3 *")
    wrong_at = first_eq + len("3 * 12 = 3")
    assert targets[first_eq] == 1 and targets[wrong_at - 1] == 1
    assert all(targets[p] == 0 for p in range(wrong_at, ends[0]))
    assert ends[0] not in targets  # the step end keeps its own (verdict) label
    assert not any(ends[0] < p <= ends[1] for p in targets)  # a malformed step gets no dense labels
    # step 2 wrote no result, so step 3 is due to use the problem's 70, and its 38 is wrong from its first digit
    third_eq = ends[1] + 1 + steps[2].index("38 -")
    assert third_eq - 1 not in targets  # dense labels start at the equation
    assert all(targets[p] == 0 for p in range(third_eq, ends[2]))


def test_prm_example_keeps_the_lm_loss_on_correct_steps_only():
    steps = ["3 bags of 12: 3 * 12 = 38.", "Adds them: 34 + 38 = 72."]
    ex = make_example(PROBLEM, steps, [0, 1])
    second = range(ex.ends[0] + 1, ex.ends[1] + 1)
    assert ex.lm_positions == list(second)  # the whole second segment, "\n\n" included
    assert decode([ex.ids[p] for p in ex.lm_positions]) == steps[1] + "\n\n"
    assert ex.labels == [0, 1] and ex.dense == dense_targets(PROBLEM, steps, ex.ends)
    off = make_example(PROBLEM, steps, [0, 1], dense=False, lm=False)  # a recipe with both terms off
    assert (off.ids, off.ends, off.labels) == (ex.ids, ex.ends, ex.labels) and off.dense == off.lm_positions == []


def test_prm_loss_terms_add_up_and_backpropagate():
    from arbitrage.lab.modeling import Size, new_causal_lm, new_prm

    size = Size(1, 16, 32, 2)
    prm = new_prm(size, seed=0, init_from=new_causal_lm(size, seed=0))
    batch = [make_example(PROBLEM, RIGHT, [1, 1, 1]), make_example(PROBLEM, ["3 * 12 = 38."], [0])]
    ends = prm_loss(prm, batch, "cpu")
    with_dense = prm_loss(prm, batch, "cpu", dense_weight=1.0)
    full = prm_loss(prm, batch, "cpu", dense_weight=1.0, lm_weight=1.0)
    assert 0 < ends.item() < with_dense.item() < full.item()
    full.backward()
    assert prm.model.embed_tokens.weight.grad is not None and prm.score.weight.grad is not None


def test_step_end_loss_equals_bce_on_the_models_own_forward():
    import torch

    from arbitrage.lab.modeling import Size, new_causal_lm, new_prm
    from arbitrage.lab.tokenizer import PAD_ID

    size = Size(1, 16, 32, 2)
    prm = new_prm(size, seed=0, init_from=new_causal_lm(size, seed=0)).eval()  # eval: no dropout to compare
    batch = [make_example(PROBLEM, RIGHT, [1, 0, 1]), make_example(PROBLEM, ["3 * 12 = 38."], [0])]
    width = max(len(ex.ids) for ex in batch)
    ids = torch.tensor([ex.ids + [PAD_ID] * (width - len(ex.ids)) for ex in batch])
    mask = torch.tensor([[1] * len(ex.ids) + [0] * (width - len(ex.ids)) for ex in batch])
    logits = prm(input_ids=ids, attention_mask=mask).logits[..., 0]
    picked = torch.stack([logits[i, e] for i, ex in enumerate(batch) for e in ex.ends])
    labels = torch.tensor([float(y) for ex in batch for y in ex.labels])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(picked, labels)
    assert torch.allclose(prm_loss(prm, batch, "cpu"), expected, atol=1e-6)


def test_cached_frozen_bottom_gives_the_full_models_loss_and_gradients():
    import torch

    from arbitrage.lab.frozen_bottom import CachedPRMLoss, cache_bottom
    from arbitrage.lab.modeling import Size, new_causal_lm, new_prm

    size = Size(3, 16, 32, 2)
    prm = new_prm(size, seed=0, init_from=new_causal_lm(size, seed=0)).eval()  # eval: no dropout to compare
    batch = [make_example(PROBLEM, RIGHT, [1, 0, 1]), make_example(PROBLEM, ["3 * 12 = 38."], [0])]
    cached = cache_bottom(prm, batch, n_frozen=2, device="cpu")
    assert [c.state.shape for c in cached] == [(len(ex.ids), 16) for ex in batch]

    full = prm_loss(prm, batch, "cpu", dense_weight=1.0, lm_weight=1.0)
    full.backward()
    top_grads = {n: p.grad.clone() for n, p in prm.named_parameters() if n.startswith(("model.layers.2.", "score"))}
    prm.zero_grad()
    fast = CachedPRMLoss(prm, n_frozen=2, dense_weight=1.0, lm_weight=1.0)(prm, cached, "cpu")
    assert torch.allclose(fast, full, atol=1e-6)
    fast.backward()
    for name, grad in top_grads.items():
        assert torch.allclose(dict(prm.named_parameters())[name].grad, grad, atol=1e-6), name
    assert prm.model.layers[0].self_attn.q_proj.weight.grad is None  # the bottom never sees the loss
    assert len(prm.model.layers) == 3  # the split shares modules, it does not cut the PRM


def test_train_prm_with_top_layers_trains_only_those_from_the_cache():
    import torch

    from arbitrage.lab.modeling import Size, new_causal_lm
    from arbitrage.lab.prm_training import PRMRecipe
    from arbitrage.lab.train import train_prm

    size = Size(3, 16, 32, 2)
    target = new_causal_lm(size, seed=0)
    rows = [{"problem": PROBLEM, "steps": RIGHT, "labels": [1, 1, 1]},
            {"problem": PROBLEM, "steps": ["3 * 12 = 38."], "labels": [0]}]
    recipe = PRMRecipe(steps=3, batch_size=2, warmup=1, train_top_layers=1)
    prm, log = train_prm(recipe, rows, target, size, device="cpu", seed=0)
    start = target.model.state_dict()
    for name, value in prm.model.state_dict().items():
        moved = not torch.equal(value, start[name])
        assert moved == name.startswith(("layers.2.", "norm.")), name
    assert log["steps"] == 3 and log["frozen_layers_seconds"] >= 0
