"""The escalation audit done after a batch run (arbitrage/eval/audit.py)."""

from __future__ import annotations

import json

import pytest

from arbitrage.config import Config
from arbitrage.eval.audit import apply_scores, audit_records, pending_items
from arbitrage.eval.run import read_results, run_batch
from arbitrage.solver import Solver
from fakes import ScriptedPRM
from sweep_world import World


def record(*steps, error=None):
    return {"id": "p", "problem": "P", "error": error, "steps": list(steps), "counters": {"steps": len(steps)}}


def step(text, *, escalated=False, draft_text=None, draft_score=None, target_score=None):
    return {"text": text, "source": "target" if escalated else "draft", "escalated": escalated,
            "draft_text": draft_text, "draft_score": draft_score, "target_score": target_score}


class CountingPRM(ScriptedPRM):
    def __init__(self, rewards):
        super().__init__(rewards)
        self.inputs = []

    def score(self, problem, steps):
        self.inputs.append((problem, tuple(steps)))
        return super().score(problem, steps)


def test_escalated_steps_get_both_scores_on_their_prefix_and_counters():
    prm = CountingPRM({"a": 0.9, "d1": 0.3, "t1": 0.8, "d2": 0.7, "t2": 0.6})
    original = record(step("a"), step("t1", escalated=True, draft_text="d1"), step("t2", escalated=True, draft_text="d2"))
    [audited] = audit_records([original], prm)
    assert sorted(prm.inputs) == sorted([("P", ("a", "d1")), ("P", ("a", "t1")), ("P", ("a", "t1", "d2")),
                                         ("P", ("a", "t1", "t2"))])
    scores = [(s["draft_score"], s["target_score"]) for s in audited["steps"]]
    assert scores == [(None, None), (0.3, 0.8), (0.7, 0.6)]
    counters = audited["counters"]
    assert (counters["scored_escalations"], counters["wasted_escalations"], counters["audit_prm_calls"]) == (2, 1, 4)
    assert original["steps"][1]["draft_score"] is None  # the input record is not modified


def test_a_target_step_equal_to_the_draft_step_is_one_call_and_wasted():
    prm = CountingPRM({"same": 0.8})
    [audited] = audit_records([record(step("same", escalated=True, draft_text="same"))], prm)
    assert prm.inputs == [("P", ("same",))]
    assert audited["steps"][0]["draft_score"] == audited["steps"][0]["target_score"] == 0.8
    assert audited["counters"]["wasted_escalations"] == 1 and audited["counters"]["audit_prm_calls"] == 1


def test_rsd_steps_score_only_the_target_and_audited_records_are_left_alone():
    prm = CountingPRM({"t": 0.9})
    rsd = record(step("t", escalated=True, draft_text="d", draft_score=0.2))
    assert pending_items(rsd) == [("P", ("t",))]
    [audited] = audit_records([rsd], prm)
    assert audited["steps"][0]["target_score"] == 0.9 and audited["counters"]["wasted_escalations"] == 0
    assert pending_items(audited) == [] and apply_scores(audited, {}) is audited
    tie = record(step("d", escalated=True, draft_text="d", draft_score=0.4))  # the target wrote the draft's step
    assert pending_items(tie) == []
    [audited] = audit_records([tie], prm)
    assert audited["steps"][0]["target_score"] == 0.4 and audited["counters"]["wasted_escalations"] == 1
    assert audited["counters"]["audit_prm_calls"] == 0 and len(prm.inputs) == 1
    errored = record(step("t", escalated=True, draft_text="d"), error="RuntimeError: boom")
    assert pending_items(errored) == [] and audit_records([errored], prm) == [errored]


def test_run_batch_audits_after_solving_with_the_counts_of_the_in_graph_audit(tmp_path):
    world = World(8, seed=3)
    config = Config(policy="arbitrage", threshold=0.45, audit_escalations=True)
    models = world.models()
    solving = []
    original_score = models.prm.score

    def score(problem, steps):
        solving.append(models.draft.calls)  # how far the solving had got when the PRM was called
        return original_score(problem, steps)

    models.prm.score = score
    summary = run_batch(config, world.problems, tmp_path, models=models, progress=False)
    draft_calls = models.draft.calls
    assert solving and all(calls == draft_calls for calls in solving)  # every PRM call came after the last draft step
    records = read_results(tmp_path / "results.jsonl")
    assert all("prm_audit" not in r["timings_s"] for r in records)

    inline = Solver(config, world.models())  # the graph's own audit, for comparison
    expected = {p.id: inline.solve(p.id, p.problem, p.answer) for p in world.problems}
    for got in records:
        want = expected[got["id"]]
        assert [(s["text"], s["draft_score"], s["target_score"]) for s in got["steps"]] == [
            (s["text"], s["draft_score"], s["target_score"]) for s in want["steps"]
        ]
        for name in ("scored_escalations", "wasted_escalations", "audit_prm_calls"):
            assert got["counters"].get(name, 0) == want["counters"].get(name, 0), name
    assert summary["scored_escalations"] == summary["escalated_steps"] > 0
    assert summary["wasted_escalations"] == sum(r["counters"].get("wasted_escalations", 0) for r in records)


def test_a_rerun_audits_what_a_run_left_unaudited_without_solving_again(tmp_path):
    world = World(6, seed=3)
    config = Config(policy="rsd", threshold=0.9, audit_escalations=True)
    models = world.models()
    run_batch(config.model_copy(update={"audit_escalations": False}), world.problems, tmp_path, models=models,
              progress=False)
    records = read_results(tmp_path / "results.jsonl")
    escalated = [(r, s) for r in records for s in r["steps"] if s["escalated"]]
    assert escalated and all(s["target_score"] is None for _, s in escalated)
    for _, tie in escalated:  # as when the target writes the draft's own step: no PRM call is needed
        tie["draft_text"] = tie["text"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    draft_calls = models.draft.calls
    summary = run_batch(config, world.problems, tmp_path, models=models, progress=False)
    assert models.draft.calls == draft_calls  # nothing solved again
    audited = {r["id"]: r for r in read_results(tmp_path / "results.jsonl")}
    assert all(s["target_score"] is not None for r in audited.values() for s in r["steps"] if s["escalated"])
    assert all(s["target_score"] == s["draft_score"] for r in audited.values() for s in r["steps"] if s["escalated"])
    assert summary["scored_escalations"] == summary["wasted_escalations"] == summary["escalated_steps"] == len(escalated)


def test_an_audit_without_a_prm_is_refused_before_solving(tmp_path):
    world = World(2)
    models = world.models()
    models.prm = None
    config = Config(policy="arbitrage", threshold=0.5, audit_escalations=True)
    with pytest.raises(ValueError, match="audit_escalations needs a loaded prm"):
        run_batch(config, world.problems, tmp_path, models=models, progress=False)
    assert models.draft.calls == 0
