"""The one \\boxed{} finder shared by the graph's finish check and grading."""

from __future__ import annotations

import pytest

from arbitrage.eval.grading import extract_answer, grade
from arbitrage.graph.answer import last_boxed
from arbitrage.servers.factory import ModelSet
from arbitrage.config import Config
from arbitrage.solver import Solver
from fakes import ScriptedGenerator


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{12}.", "12"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not group
        ("\\boxed{\\}}", "\\}"),
        ("the answer is $\\boxed 5$", "5"),
        ("\\fbox{7}", "7"),
        ("\\boxed{3} and then \\boxed{4", "3"),  # a truncated box is no answer
        ("\\boxed{4", None),
        ("\\boxedx{4}", None),
        ("no answer here", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_grading_extracts_with_the_same_function():
    assert extract_answer("so $\\boxed 5$.") == last_boxed("so $\\boxed 5$.") == "5"


def test_graph_finishes_on_a_one_token_box_and_reports_it_as_the_answer():
    models = ModelSet(draft=ScriptedGenerator("d", ["x = 2 + 3", "so \\boxed 5", "never written"]))
    record = Solver(Config(policy="draft_only"), models, grader=grade).solve("p", "2+3?", "5")
    assert record["finish_reason"] == "answer"
    assert [s["text"] for s in record["steps"]] == ["x = 2 + 3", "so \\boxed 5"]
    assert record["final_answer"] == "5" and record["correct"] is True
