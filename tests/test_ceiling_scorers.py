"""The reference scorers of the ceiling benchmarks judge draft steps exactly as the lab checker does."""

import sys
from pathlib import Path

from arbitrage.lab.task import generate_problems
from arbitrage.protocols import AnnotatedStep, RouterQuery, StepOutput

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from perfect_router_ceiling import CheckerRouter  # noqa: E402
from router_wrong_steps import draft_step_wrong  # noqa: E402


def _wrong_result(step: str) -> str:
    left, result = step.split(" = ")
    digits = result.split(".")[0]
    return f"{left} = {int(digits) + 1}." + result[len(digits) + 1:]


def test_checker_router_escalates_exactly_the_wrong_draft_steps():
    problem = next(p for p in generate_problems(20, seed=3) if p.num_ops >= 2)
    previous = [AnnotatedStep(problem.steps[0], "draft")]
    right, wrong = problem.steps[1], _wrong_result(problem.steps[1])

    def query(text: str) -> RouterQuery:
        return RouterQuery(problem.problem, previous, StepOutput(text, len(text), "separator"))

    assert CheckerRouter().score(query(right)) == 0.0
    assert CheckerRouter().score(query(wrong)) == 1.0


def test_wrong_draft_step_labels_read_the_step_on_its_recorded_prefix():
    problem = next(p for p in generate_problems(20, seed=3) if p.num_ops >= 2)
    row = {"problem": problem.problem, "previous_steps": [{"text": problem.steps[0], "source": "target"}]}
    assert draft_step_wrong([{**row, "draft_step": problem.steps[1]}]) == [0]
    assert draft_step_wrong([{**row, "draft_step": _wrong_result(problem.steps[1])}]) == [1]
    # the same step on a prefix that skips the first operation is wrong there
    assert draft_step_wrong([{**row, "previous_steps": [], "draft_step": problem.steps[1]}]) == [1]
