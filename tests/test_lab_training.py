"""The lab training recipe end to end at toy size: every model is written and loads,
the log records each phase, and a rerun reuses the sampled PRM data."""

import json

import pytest

from arbitrage.lab import prm_data
from arbitrage.lab import train as lab_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    log = lab_train.train_all(0, out, recipe=lab_train.tiny_recipe())
    return out, log


def test_tiny_recipe_writes_loadable_models_and_a_log(trained):
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

    out, log = trained
    for name in ("draft", "target"):
        AutoModelForCausalLM.from_pretrained(out / name)
        AutoTokenizer.from_pretrained(out / name)
    prm = AutoModelForTokenClassification.from_pretrained(out / "prm")
    assert prm.config.num_labels == 1
    # The router's starting point: a one-label PRM on the draft's backbone, cut to its bottom layer.
    router_init = AutoModelForTokenClassification.from_pretrained(out / "router-init")
    draft = AutoModelForCausalLM.from_pretrained(out / "draft")
    assert router_init.config.num_labels == 1 and router_init.config.hidden_size == draft.config.hidden_size
    assert router_init.config.num_hidden_layers == lab_train.tiny_recipe().router_init_layers == 1
    assert draft.config.num_hidden_layers == 2
    written = json.loads((out / "training_log.json").read_text())
    assert written["prm_data"]["steps"] == log["prm_data"]["steps"] > 0
    assert written["prm"]["steps"] == lab_train.tiny_recipe().prm.steps
    assert written["router_init"]["steps"] == lab_train.tiny_recipe().router_init.steps
    assert set(written["prm_data"]["by_source"]) == {"draft", "target"}


def test_sampled_prm_data_is_kept_and_reused(trained, tmp_path, monkeypatch):
    out, log = trained
    lines = (out / "prm_data.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[1:]]
    assert sum(len(r["labels"]) for r in rows) == log["prm_data"]["steps"]
    assert all(len(r["labels"]) == len(r["steps"]) for r in rows)

    rerun = tmp_path / "rerun"
    rerun.mkdir()
    (rerun / "prm_data.jsonl").write_text((out / "prm_data.jsonl").read_text())

    def no_sampling(*args, **kwargs):
        raise AssertionError("the PRM data was sampled again")

    monkeypatch.setattr(prm_data, "sample_prm_data", no_sampling)
    again = lab_train.train_all(0, rerun, recipe=lab_train.tiny_recipe(), draft_from=out / "draft",
                                target_from=out / "target")
    assert again["prm_data"]["steps"] == log["prm_data"]["steps"]
    assert again["draft"]["reused_from"] == str(out / "draft")


def test_prm_data_from_a_different_recipe_is_not_reused(trained, tmp_path):
    out, _ = trained
    stale = tmp_path / "stale"
    stale.mkdir()
    lines = (out / "prm_data.jsonl").read_text().splitlines()
    key = json.loads(lines[0])
    key["n_problems"] += 1
    (stale / "prm_data.jsonl").write_text("\n".join([json.dumps(key), *lines[1:]]) + "\n")
    lab_train.train_all(0, stale, recipe=lab_train.tiny_recipe(), draft_from=out / "draft", target_from=out / "target")
    assert json.loads((stale / "prm_data.jsonl").read_text().splitlines()[0])["n_problems"] == key["n_problems"] - 1


def test_lab_eval_reruns_start_after_the_phases_already_written(trained, tmp_path, monkeypatch):
    from arbitrage.lab import evaluate as lab_eval

    out, _ = trained
    progress = tmp_path / "figures.json"
    first = lab_eval.evaluate(out, n=4, taus=[0.0], batch_size=4, progress_path=progress)
    assert 0.0 <= first["draft_only_accuracy"] <= 1.0 and "prm_auroc" in first  # toy models: no AUROC figure
    assert [r["tau"] for r in first["oracle"]] == [0.0]

    def no_first_phase(*args, **kwargs):
        raise AssertionError("the accuracy and PRM phase ran again")

    monkeypatch.setattr(lab_eval, "_accuracy_and_prm_figures", no_first_phase)
    again = lab_eval.evaluate(out, n=4, taus=[0.0, 0.5], batch_size=4, progress_path=progress)
    assert again["prm_steps_scored"] == first["prm_steps_scored"]
    assert [r["tau"] for r in again["oracle"]] == [0.0, 0.5]
    with pytest.raises(AssertionError, match="ran again"):  # other problems: the phase must run
        lab_eval.evaluate(out, n=3, taus=[0.0], batch_size=4, progress_path=progress)


def test_keep_bottom_layers_gives_the_normed_output_of_the_bottom_layers():
    import torch

    from arbitrage.lab.modeling import Size, keep_bottom_layers, new_prm

    full = new_prm(Size(3, 32, 64, 2), seed=0).eval()
    cut = keep_bottom_layers(new_prm(Size(3, 32, 64, 2), seed=0).eval(), 2)
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    with torch.no_grad():
        bottom_two = full.model(input_ids=ids, output_hidden_states=True).hidden_states[2]
        assert torch.allclose(cut.model(input_ids=ids).last_hidden_state, full.model.norm(bottom_two), atol=1e-5)
    assert cut.config.num_hidden_layers == len(cut.model.layers) == 2
    with pytest.raises(ValueError, match="n must be in 1..2, got 3"):
        keep_bottom_layers(cut, 3)


def _with_draft_only(problems: int):
    import dataclasses

    recipe = lab_train.tiny_recipe()
    prm = dataclasses.replace(recipe.prm, draft_only_problems=problems, draft_only_start=20, draft_only_chunk=4)
    return dataclasses.replace(recipe, prm=prm)


def test_draft_only_rows_are_kept_chunk_by_chunk_and_resumed(trained, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from arbitrage.lab.task import make_splits

    out, _ = trained
    recipe = _with_draft_only(8)
    draft = AutoModelForCausalLM.from_pretrained(out / "draft")
    train, _, _ = make_splits(0, n_train=recipe.n_train, n_validation=recipe.n_validation, n_test=recipe.n_test)
    path = tmp_path / "prm_data_draft_only.jsonl"
    real_sampler, calls = prm_data.sample_prm_data, []

    def dies_on_second_chunk(models, problems, temperatures, seed):
        calls.append([p.problem for p in problems])
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real_sampler(models, problems, temperatures, seed)

    monkeypatch.setattr(prm_data, "sample_prm_data", dies_on_second_chunk)
    with pytest.raises(RuntimeError, match="killed"):
        prm_data.draft_only_prm_data(recipe.prm, draft, train, 0, path)
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert [r["chunk"] for r in records] == [20]  # one line per finished chunk
    kept = records[0]["rows"]
    assert kept and {r["source"] for r in kept} == {"draft"}
    assert {r["problem"] for r in kept} <= {p.problem for p in train[20:24]}

    calls.clear()
    rows = prm_data.draft_only_prm_data(recipe.prm, draft, train, 0, path)
    assert calls == [[p.problem for p in train[24:28]]]  # only the missing chunk is sampled
    assert [{k: v for k, v in r.items() if k != "chunk"} for r in rows if r["chunk"] == 20] == kept  # read back
    assert {r["chunk"] for r in rows} == {20, 24}
    assert all(len(r["labels"]) == len(r["steps"]) for r in rows)
    # At most one solution per problem and temperature (an empty one has no steps to keep).
    assert len(rows) <= 8 * len(recipe.prm.draft_temperatures)

    # A kill while the second chunk's line was being written leaves half a line: that chunk is
    # sampled again, the first is kept, and the file holds whole lines again.
    text = path.read_text()
    path.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])
    calls.clear()
    again = prm_data.draft_only_prm_data(recipe.prm, draft, train, 0, path)
    assert calls == [[p.problem for p in train[24:28]]]
    assert [r for r in again if r["chunk"] == 20] == [r for r in rows if r["chunk"] == 20]
    assert [json.loads(line)["chunk"] for line in path.read_text().splitlines()[1:]] == [20, 24]


def test_draft_only_rows_join_the_prm_data(trained, tmp_path):
    out, base = trained
    log = lab_train.train_all(0, tmp_path, recipe=_with_draft_only(4), draft_from=out / "draft",
                              target_from=out / "target")
    lines = (tmp_path / "prm_data_draft_only.jsonl").read_text().splitlines()[1:]
    written = [row for line in lines for row in json.loads(line)["rows"]]
    assert log["prm_data"]["draft_only_solutions"] == len(written) > 0
    assert log["prm_data"]["solutions"] == base["prm_data"]["solutions"] + len(written)


@pytest.mark.parametrize("fields, named", [
    ({"draft_only_problems": 6, "draft_only_chunk": 4}, "multiple of draft_only_chunk"),
    ({"draft_only_problems": 4, "draft_only_start": 2, "draft_only_chunk": 4}, "draft_only_start"),
    ({"draft_only_problems": -4}, "draft_only_problems"),
])
def test_bad_draft_only_fields_are_named(fields, named):
    from arbitrage.lab.prm_training import PRMRecipe

    with pytest.raises(ValueError, match=named):
        PRMRecipe(n_problems=8, **fields)


def test_a_draft_only_range_past_the_training_split_is_refused_before_training():
    with pytest.raises(ValueError, match=r"draft_only_problems \(220\) is beyond the 200 training problems"):
        _with_draft_only(200)


def test_lab_train_names_a_bad_draft_only_count(tmp_path):
    from typer.testing import CliRunner

    from arbitrage.cli import app

    result = CliRunner().invoke(app, ["lab", "train", "--output", str(tmp_path / "out"), "--draft-only-problems", "300"])
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert "--draft-only-problems" in said and "multiple of draft_only_chunk (500)" in said
    assert not (tmp_path / "out").exists()  # refused before anything is written
