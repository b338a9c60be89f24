"""Every policy's routing decisions and counters, on the real graph with scripted models."""

from __future__ import annotations

import pytest

from arbitrage.config import Config, Limits
from arbitrage.graph.builder import build_graph
from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import initial_state
from arbitrage.policies import ARBITRAGE, GENERATE, ORACLE, RSD, StepScores
from arbitrage.servers.factory import ModelSet
from arbitrage.solver import Solver
from fakes import ScriptedGenerator, ScriptedPRM, ScriptedRouter

DRAFT = ["d0", "d1", "d2 so \\boxed{3}"]
TARGET = ["t0", "t1", "t2 so \\boxed{4}"]


def solve(policy: str, threshold: float | None = None, *, router=None, prm=None, limits=None, audit=False, **settings):
    draft = ScriptedGenerator("draft", DRAFT)
    target = ScriptedGenerator("target", TARGET)
    config = Config(policy=policy, threshold=threshold, limits=limits or Limits(), audit_escalations=audit, **settings)
    models = ModelSet(draft=draft, target=target, prm=prm, router=router)
    solver = Solver(config, models, grader=lambda predicted, gold, dataset: predicted == gold)
    record = solver.solve("p1", "How many?", "3")
    assert record["error"] is None, record["error"]
    return record, draft, target


def sources(record):
    return [(step["text"], step["source"]) for step in record["steps"]]


def test_decision_rules_compare_against_the_threshold_as_the_paper_defines():
    assert ARBITRAGE.escalates(0.5, StepScores(router=0.51)) and not ARBITRAGE.escalates(0.5, StepScores(router=0.5))
    assert not RSD.escalates(0.7, StepScores(draft=0.7)) and RSD.escalates(0.7, StepScores(draft=0.69))
    assert ORACLE.escalates(0.2, StepScores(draft=0.2, target=0.5))
    assert not ORACLE.escalates(0.2, StepScores(draft=0.2, target=0.4))
    # The target writing the draft's own step is no escalation, whatever the threshold.
    assert not ORACLE.escalates(-0.5, StepScores(draft=0.3, target=0.3, same_text=True))
    assert GENERATE.escalates(None, StepScores(draft=0.3, target=0.31))
    assert not GENERATE.escalates(None, StepScores(draft=0.3, target=0.3))


def test_a_graph_refuses_a_context_with_another_policy():
    config = Config(policy="rsd")
    models = ModelSet(draft=ScriptedGenerator("draft", DRAFT), target=ScriptedGenerator("target", TARGET))
    graph = build_graph("draft_only")
    with pytest.raises(ValueError, match="wired for policy 'draft_only' but the run's context has 'rsd'"):
        graph.invoke(initial_state("p", "q"), context=SolveContext.from_config(config, models))


def test_arbitrage_escalates_only_steps_the_router_flags_and_never_calls_target_otherwise():
    router = ScriptedRouter({"d0": 0.1, "d1": 0.9, DRAFT[2]: 0.5})
    record, draft, target = solve("arbitrage", 0.5, router=router)
    assert sources(record) == [("d0", "draft"), ("t1", "target"), (DRAFT[2], "draft")]
    assert len(target.calls) == 1 and target.calls[0] == ["d0"]  # regenerated from the same prefix
    assert draft.calls == [[], ["d0"], ["d0", "t1"]]
    counters = record["counters"]
    assert counters["router_calls"] == 3
    assert counters["target_calls"] == 1
    assert counters["escalated_steps"] == 1 and counters["accepted_draft_steps"] == 2
    assert counters["discarded_draft_tokens"] == 5 and counters["draft_tokens"] == 15
    assert record["final_answer"] == "3" and record["correct"] is True


def test_arbitrage_router_sees_previous_steps_annotated_with_their_source():
    router = ScriptedRouter({"d1": 0.9})
    solve("arbitrage", 0.5, router=router)
    last = router.queries[-1]
    assert [(s.text, s.source) for s in last.previous_steps] == [("d0", "draft"), ("t1", "target")]
    assert last.draft.text == DRAFT[2]


def test_arbitrage_with_all_scores_below_tau_never_calls_the_target():
    record, _, target = solve("arbitrage", 0.95, router=ScriptedRouter({}))
    assert target.calls == []
    assert record["counters"].get("target_calls", 0) == 0
    assert all(step["source"] == "draft" for step in record["steps"])


def test_rsd_accepts_drafts_whose_reward_clears_tau():
    prm = ScriptedPRM({"d0": 0.9, "d1": 0.2, DRAFT[2]: 0.7})
    record, _, target = solve("rsd", 0.7, prm=prm)
    assert sources(record) == [("d0", "draft"), ("t1", "target"), (DRAFT[2], "draft")]
    assert len(target.calls) == 1
    assert record["counters"]["prm_calls"] == 3
    assert [s["draft_score"] for s in record["steps"]] == [0.9, 0.2, 0.7]


def test_oracle_escalates_on_reward_difference_and_always_runs_both():
    prm = ScriptedPRM({"d0": 0.5, "t0": 0.6, "d1": 0.1, "t1": 0.9, DRAFT[2]: 0.9, TARGET[2]: 0.2})
    record, _, target = solve("oracle", 0.2, prm=prm)
    assert sources(record) == [("d0", "draft"), ("t1", "target"), (DRAFT[2], "draft")]
    assert len(target.calls) == 3
    counters = record["counters"]
    assert counters["prm_calls"] == 6
    assert counters["discarded_target_tokens"] == 10 and counters["discarded_draft_tokens"] == 5
    assert counters["scored_escalations"] == 1 and counters["wasted_escalations"] == 0


def test_generate_keeps_the_better_step_and_records_a_training_row_per_step():
    prm = ScriptedPRM({"d0": 0.5, "t0": 0.5, "d1": 0.1, "t1": 0.9, DRAFT[2]: 0.3, TARGET[2]: 0.8})
    record, _, _ = solve("generate", prm=prm)
    assert sources(record) == [("d0", "draft"), ("t1", "target"), (TARGET[2], "target")]
    rows = record["training_rows"]
    assert [row["label"] for row in rows] == [0, 1, 1]  # a tie is not an advantage
    assert rows[1]["delta"] == pytest.approx(0.8)
    assert rows[2]["previous_steps"] == [{"text": "d0", "source": "draft"}, {"text": "t1", "source": "target"}]
    assert rows[2]["router_input"] == "How many?\n\nModel 0: d0\n\nModel 1: t1\n\nModel 0: " + DRAFT[2]
    assert record["final_answer"] == "4" and record["correct"] is False


def test_generate_labels_with_the_mean_score_of_several_target_samples():
    prm = ScriptedPRM({"d0": 0.5, "t0": 0.6, "t0 (sampled)": 0.2, "d1": 0.5, "t1": 0.4, "t1 (sampled)": 0.9})
    record, _, target = solve("generate", prm=prm, target_samples=3)
    assert len(target.calls) == 9 and record["counters"]["target_calls"] == 9
    # per step: the draft, the kept target and the two extra samples, which wrote the same text and so share one call
    assert record["counters"]["prm_calls"] == 3 * 3 and record["counters"]["reused_prm_scores"] == 3
    first, second = record["training_rows"][:2]
    assert first["target_sample_scores"] == [0.6, 0.2, 0.2]
    assert first["target_score"] == pytest.approx(1.0 / 3) and first["label"] == 0  # mean 0.33 < 0.5
    assert second["target_score"] == pytest.approx(2.2 / 3) and second["label"] == 1
    assert sources(record)[:2] == [("t0", "target"), ("d1", "draft")]  # kept step: the configured sample


class NoisyPRM(ScriptedPRM):
    """Like a batched PRM: every call is a little off, so the same input never scores twice the same."""

    def score(self, problem, steps) -> list[float]:
        rewards = super().score(problem, steps)
        return rewards[:-1] + [rewards[-1] + 1e-7 * self.calls]


def solve_with_equal_steps(policy: str, threshold: float | None = None, **settings):
    steps = ["same 0", "different 1", "same 2 so \\boxed{3}"]
    draft = ScriptedGenerator("draft", steps)
    target = ScriptedGenerator("target", [s.replace("different", "other") for s in steps])
    prm = NoisyPRM({"different 1": 0.2, "other 1": 0.6})
    config = Config(policy=policy, threshold=threshold, **settings)
    solver = Solver(config, ModelSet(draft=draft, target=target, prm=prm), grader=lambda p, g, d: p == g)
    record = solver.solve("p1", "How many?", "3")
    assert record["error"] is None, record["error"]
    return record, prm


def test_a_target_step_equal_to_the_draft_step_takes_its_score_so_ties_stay_ties():
    record, prm = solve_with_equal_steps("generate")
    rows = record["training_rows"]
    assert [r["delta"] for r in rows[::2]] == [0.0, 0.0] and [r["label"] for r in rows] == [0, 1, 0]
    assert prm.calls == 4 and record["counters"]["prm_calls"] == 4 and record["counters"]["reused_prm_scores"] == 2
    record, _ = solve_with_equal_steps("oracle", 0.0)
    assert [s["source"] for s in record["steps"]] == ["draft", "target", "draft"]
    assert record["counters"]["escalated_steps"] == 1


def test_oracle_below_zero_escalates_only_steps_the_target_wrote_differently():
    # At tau < 0 a tie (delta exactly 0) clears the threshold, but taking the target's
    # copy of the draft's own step is no escalation.
    record, _ = solve_with_equal_steps("oracle", -0.5)
    assert [s["source"] for s in record["steps"]] == ["draft", "target", "draft"]
    assert record["counters"]["escalated_steps"] == 1 and record["counters"]["accepted_draft_steps"] == 2
    assert record["counters"]["target_calls"] == 3  # the oracle still runs the target at every step


def test_target_samples_equal_to_a_scored_step_reuse_its_score():
    record, prm = solve_with_equal_steps("generate", target_samples=3)
    first = record["training_rows"][0]  # the draft and the target wrote "same 0"; both samples "same 0 (sampled)"
    assert first["target_sample_scores"][0] == first["draft_score"]
    assert first["target_sample_scores"][1] == first["target_sample_scores"][2]
    assert record["counters"]["prm_calls"] == prm.calls == 2 + 3 + 2  # one per distinct text of each step
    assert record["counters"]["reused_prm_scores"] == 2 + 1 + 2


def test_draft_only_and_target_only_use_one_model():
    record, _, target = solve("draft_only")
    assert [s for _, s in sources(record)] == ["draft"] * 3 and target.calls == []
    assert record["counters"]["draft_steps"] == 3
    record, draft, _ = solve("target_only")
    assert [s for _, s in sources(record)] == ["target"] * 3 and draft.calls == []
    assert record["counters"]["target_calls"] == 3 and record["counters"]["escalated_steps"] == 3


def test_audit_scores_escalations_and_counts_wasted_ones_apart_from_policy_cost():
    router = ScriptedRouter({"d0": 0.9, "d1": 0.9})
    prm = ScriptedPRM({"d0": 0.8, "t0": 0.3, "d1": 0.2, "t1": 0.9})
    record, _, _ = solve("arbitrage", 0.5, router=router, prm=prm, audit=True)
    counters = record["counters"]
    assert counters["scored_escalations"] == 2 and counters["wasted_escalations"] == 1
    assert counters["audit_prm_calls"] == 4 and counters.get("prm_calls", 0) == 0
    assert "prm_audit" in record["timings_s"] and "prm" not in record["timings_s"]


def test_rsd_audit_scores_only_the_target_extra():
    record, _, _ = solve("rsd", 0.7, prm=ScriptedPRM({"d0": 0.1, "t0": 0.05, "d1": 0.9, DRAFT[2]: 0.9}), audit=True)
    counters = record["counters"]
    assert counters["prm_calls"] == 3 and counters["audit_prm_calls"] == 1
    assert counters["wasted_escalations"] == 1


def test_solution_longer_than_langgraph_default_recursion_limit_finishes():
    steps = [f"step {i}" for i in range(40)] + ["\\boxed{1}"]
    draft = ScriptedGenerator("draft", steps)
    config = Config(policy="draft_only", limits=Limits(max_steps=60))
    record = Solver(config, ModelSet(draft=draft)).solve("long", "Count.", None)
    assert record["error"] is None
    assert len(record["steps"]) == 41 and record["finish_reason"] == "eos"


def test_max_steps_and_token_budget_end_a_solution_that_never_finishes():
    draft = ScriptedGenerator("draft", ["again"] * 2 + ["never ends"])
    draft.steps = ["again"] * 100
    record = Solver(Config(policy="draft_only", limits=Limits(max_steps=7)), ModelSet(draft=draft)).solve("p", "q", None)
    assert len(record["steps"]) == 7 and record["finish_reason"] == "max_steps"
    record = Solver(
        Config(policy="draft_only", limits=Limits(max_total_tokens=12)), ModelSet(draft=draft)
    ).solve("p", "q", None)
    assert record["finish_reason"] == "max_total_tokens"
    assert record["counters"]["committed_tokens"] == 12  # the last step was capped to the budget left


def test_boxed_answer_ends_the_solution_even_before_eos():
    draft = ScriptedGenerator("draft", ["so \\boxed{\\frac{1}{2}}", "more", "more"])
    record = Solver(Config(policy="draft_only"), ModelSet(draft=draft)).solve("p", "q", None)
    assert len(record["steps"]) == 1 and record["finish_reason"] == "answer"
    assert record["final_answer"] == "\\frac{1}{2}"


def test_sessions_are_released_after_each_problem():
    router = ScriptedRouter({})
    record, draft, target = solve("arbitrage", 0.5, router=router)
    assert draft.ended == ["p1"] and target.ended == ["p1"]


def test_model_errors_are_captured_in_the_record():
    class Broken(ScriptedGenerator):
        def step(self, *args, **kwargs):
            raise ConnectionError("target server is gone")

    solver = Solver(Config(policy="target_only"), ModelSet(target=Broken("t", ["x"])))
    record = solver.solve("p", "q", "1")
    assert record["error"] == "ConnectionError: target server is gone"
    assert "steps" not in record


def test_empty_problem_is_rejected_with_a_clear_error():
    solver = Solver(Config(policy="draft_only"), ModelSet(draft=ScriptedGenerator("d", ["x"])))
    record = solver.solve("p", "   ", None)
    assert "non-empty string" in record["error"]


def test_solver_refuses_a_policy_whose_models_are_not_loaded():
    with pytest.raises(ValueError, match="needs a loaded target model"):
        Solver(Config(policy="arbitrage"), ModelSet(draft=ScriptedGenerator("d", ["x"]), target=None))


def test_prm_node_uses_score_last_when_the_backend_offers_it():
    class LastOnly(ScriptedPRM):
        def score(self, problem, steps):
            raise AssertionError("score() would re-score every step")

        def score_last(self, problem, steps):
            self.calls += 1
            return self.rewards.get(steps[-1], 0.5)

    prm = LastOnly({"d0": 0.9, "d1": 0.2, DRAFT[2]: 0.8})
    record, _, _ = solve("rsd", 0.7, prm=prm)
    assert sources(record) == [("d0", "draft"), ("t1", "target"), (DRAFT[2], "draft")] and prm.calls == 3


def test_a_prm_returning_the_wrong_number_of_rewards_is_an_error():
    class Short(ScriptedPRM):
        def score(self, problem, steps):
            return [0.5]

    draft = ScriptedGenerator("draft", ["a", "b \\boxed{1}"])
    models = ModelSet(draft=draft, target=draft, prm=Short({}))
    record = Solver(Config(policy="rsd", threshold=0.0), models).solve("p", "q", None)
    assert record["error"] == "ValueError: PRM returned 1 rewards for 2 steps"  # the first step scored fine
