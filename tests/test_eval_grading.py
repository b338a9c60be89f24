"""Answer extraction and grading, checked on the real MATH500 and GSM8K gold answers."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from arbitrage.eval.grading import extract_answer, grade, normalize_gold

DATA_DIR = Path(os.environ.get("ARBITRAGE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
GSM8K = DATA_DIR / "gsm8k_test.jsonl"
MATH500 = DATA_DIR / "math500.jsonl"
needs_data = pytest.mark.skipif(not (GSM8K.exists() and MATH500.exists()), reason=f"benchmark data not in {DATA_DIR}")


def boxed(answer: str) -> str:
    return "\\boxed{" + answer + "}"


@pytest.fixture(scope="module")
def math500_golds() -> list[str]:
    return [json.loads(line)["answer"] for line in MATH500.open()]


# --- extraction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $x = \\boxed{\\frac{a}{\\sqrt{b^{2}}}}$.", "\\frac{a}{\\sqrt{b^{2}}}"),
        ("first \\boxed{1}, then \\boxed{2}.", "2"),
        ("the set is \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{\\text{(C)}}", "\\text{(C)}"),
        ("\\boxed{3} and then \\boxed{\\frac{1}{", "3"),  # a truncated last box is no answer
        ("$\\boxed 5$", "5"),
        ("\\boxed {7}", "7"),
        ("She makes 9 * 2 = $18.\n#### 1,000", "1,000"),
        ("#### 3\nmore text\n#### 4", "4"),
        ("Steps...\n\nThe answer is 42.", "42"),
        ("The answer is $\\frac{3}{4}$. Done.", "\\frac{3}{4}"),
        ("**Answer:** 17", "17"),
        ("Final Answer: The final answer is $18$. I hope it is correct.", "18"),
        ("answer: 3.5", "3.5"),
        ("#### 5 but \\boxed{6}", "6"),  # a box wins over the other markers
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["no final answer here", "", "\\boxed{}", "\\boxed{1", "#### ", None, 12])
def test_extract_answer_none_when_there_is_no_answer(text):
    assert extract_answer(text) is None


# --- MATH500 golds ---------------------------------------------------------------------


@needs_data
def test_every_math500_gold_grades_correct_against_itself_boxed(math500_golds):
    # All 500: about 4 s on a 2-core machine, so no sampling.
    failures = [gold for gold in math500_golds if not grade(boxed(gold), gold, "math500")]
    assert failures == []


@needs_data
def test_math500_gold_grades_correct_as_a_bare_answer_or_in_a_sentence(math500_golds):
    sample = math500_golds[::5]
    assert [g for g in sample if not grade(g, g)] == []
    assert [g for g in sample if not grade(f"Steps.\n\nThe answer is ${g}$.", g)] == []


@needs_data
def test_math500_integer_gold_plus_one_grades_wrong(math500_golds):
    integers = [g for g in math500_golds if re.fullmatch(r"-?\d+", g)]
    assert len(integers) > 250
    assert [g for g in integers if grade(boxed(str(int(g) + 1)), g)] == []
    assert [g for g in integers if int(g) != 0 and grade(boxed(str(-int(g))), g)] == []


@needs_data
def test_math500_fraction_gold_with_another_denominator_grades_wrong(math500_golds):
    fractions = [g for g in math500_golds if re.fullmatch(r"-?\\[dt]?frac\{\d+\}\{\d+\}", g)]
    assert len(fractions) > 20
    bumped = [(g, re.sub(r"\{(\d+)\}$", lambda m: "{" + str(int(m[1]) + 1) + "}", g)) for g in fractions]
    assert [g for g, wrong in bumped if grade(boxed(wrong), g)] == []


@needs_data
def test_math500_gold_of_another_problem_grades_wrong(math500_golds):
    pairs = [(g, other) for g, other in zip(math500_golds[::7], math500_golds[1::7])]
    # Only pairs whose golds differ as numbers or as simple text, so "wrong" is certain.
    integer = re.compile(r"-?\d+")
    distinct = [(g, o) for g, o in pairs if integer.fullmatch(g) and integer.fullmatch(o) and int(g) != int(o)]
    assert len(distinct) > 20
    assert [(g, o) for g, o in distinct if grade(boxed(o), g)] == []


@pytest.mark.parametrize(
    "predicted, gold",
    [
        (boxed("0.5"), "\\frac{1}{2}"),
        (boxed("\\dfrac{1}{2}"), "\\frac{1}{2}"),
        (boxed("\\tfrac12"), "\\frac{1}{2}"),
        (boxed("\\frac{\\sqrt{2}}{2}"), "\\frac{1}{\\sqrt{2}}"),
        (boxed("(1, 2]"), "(1,2]"),
        (boxed("\\{2, 1\\}"), "\\{1,2\\}"),
        (boxed("x = 3"), "3"),
        (boxed("5\\text{ cm}"), "5"),
        (boxed("90^\\circ"), "90"),
        (boxed("\\left( 3, \\frac{\\pi}{2} \\right)"), "(3, \\pi/2)"),
        ("$\\frac{1}{2}$", "\\frac12"),
        (7, "7"),
        ("7", 7),
    ],
)
def test_equivalent_forms_grade_correct(predicted, gold):
    assert grade(predicted, gold)


@pytest.mark.parametrize(
    "predicted, gold",
    [
        (boxed("\\frac{2}{3}"), "\\frac{1}{2}"),
        (boxed("[1, 2)"), "(1,2]"),
        (boxed("(3, \\pi)"), "\\left( 3, \\frac{\\pi}{2} \\right)"),
        (boxed("1,2"), "1,000"),
        (boxed("x^2"), "x^3"),
        (boxed("0.333"), "\\frac{1}{3}"),
    ],
)
def test_different_values_grade_wrong(predicted, gold):
    assert not grade(predicted, gold)


# --- GSM8K -----------------------------------------------------------------------------


@needs_data
def test_every_gsm8k_reference_solution_grades_correct_against_its_gold():
    records = [json.loads(line) for line in GSM8K.open()]
    golds = [r["answer"].split("####")[-1].strip().replace(",", "") for r in records]
    assert [r["idx"] for r, g in zip(records, golds) if not grade(r["answer"], g, "gsm8k")] == []
    assert [g for g in golds if grade(boxed(str(int(g) + 1)), g, "gsm8k")] == []


@pytest.mark.parametrize(
    "predicted",
    ["1,000", "\\boxed{1,000}", "\\boxed{1000}", "\\boxed{\\$1,000}", "The answer is $1,000.", "\\boxed{1000 dollars}",
     "\\boxed{1000\\text{ dollars}}", "#### 1000.00"],
)
def test_gsm8k_number_forms_grade_correct(predicted):
    assert grade(predicted, "1000", "gsm8k")


@pytest.mark.parametrize(
    "predicted", ["\\boxed{100}", "\\boxed{1,001}", "\\boxed{-1000}", "\\boxed{10,00}", "1000 + 1"]
)
def test_gsm8k_other_numbers_grade_wrong(predicted):
    assert not grade(predicted, "1000", "gsm8k")


# --- robustness ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "predicted, gold",
    [
        (None, "1"), ("1", None), ({"a": 1}, "1"), ("1", [{"a": 1}]), ("1", []), ("", "1"), ("1", ""), (True, "1"),
        ("\\boxed{5", "5"),              # truncated: might have been 50
        ("Step 1: 2 + 3 = 5\n\nStep 2: so 5", "5"),  # a trace with no final answer
        ("\\boxed{\\frac{1}{", "\\frac{1}{2}"),
        ("}}}{{{\\boxed{}}\\\\", "1"),
        ("\\boxed{\\left( \\right.}", "1"),
        ("\\boxed{" + "x" * 5000 + "}", "1"),
    ],
)
def test_odd_input_grades_false_without_raising(predicted, gold):
    assert grade(predicted, gold) is False


PATHOLOGICAL = [
    boxed("2^{2^{2^{2^{2^{10}}}}}"),  # exact evaluation would never finish
    boxed("9^{9^{9}}"),
    boxed("10^{10^{10}}!"),
    boxed("(" * 40 + "1" + ")" * 40),  # parsing time explodes with nesting
]


@pytest.mark.parametrize("predicted", PATHOLOGICAL)
def test_pathological_answers_are_refused_quickly(predicted):
    start = time.perf_counter()
    assert grade(predicted, "5") is False
    assert time.perf_counter() - start < 3


@needs_data
def test_grading_from_worker_threads_matches_the_main_thread(math500_golds):
    sample = math500_golds[::10]
    cases = [(boxed(g), g) for g in sample] + [(boxed(o), g) for g, o in zip(sample, sample[1:])] + [
        (p, "5") for p in PATHOLOGICAL
    ]
    in_main = [grade(p, g) for p, g in cases]
    threads_used = set()

    def in_worker(case):
        threads_used.add(threading.current_thread().name)
        return grade(*case)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        in_workers = list(pool.map(in_worker, cases))
    assert in_workers == in_main
    assert sum(in_main[: len(sample)]) == len(sample)  # every gold matched itself
    assert threading.main_thread().name not in threads_used
    assert time.perf_counter() - start < 30


# --- gold answers as datasets write them ---------------------------------------------------


@pytest.mark.parametrize(
    "predicted, gold",
    [
        (boxed("(-\\infty,0)\\cup\\{1\\}"), "$(-\\infty, 0) \\cup\\{1\\}$."),  # OlympiadBench's shape
        (boxed("\\frac{1}{2}"), "$\\frac12$,"),
        (boxed("x=3"), "$x = 3.$"),
        (boxed("120"), "$5!$"),  # a trailing "!" is a factorial, not punctuation
    ],
)
def test_gold_with_dollars_and_trailing_punctuation_matches_the_correct_answer(predicted, gold):
    assert grade(predicted, gold)


def test_normalize_gold_strips_delimiters_and_punctuation_only():
    assert normalize_gold("$(-\\infty, 0) \\cup\\{1\\}$.") == "(-\\infty, 0) \\cup\\{1\\}"
    assert normalize_gold(" $5!$ ") == "5!"
    assert normalize_gold("3.5") == "3.5"


def test_a_list_of_golds_is_correct_when_the_prediction_matches_any():
    golds = ["$2$", "$-3$."]
    assert grade(boxed("-3"), golds) and grade(boxed("2"), golds)
    assert not grade(boxed("3"), golds)


def test_a_written_olympiad_style_file_grades_end_to_end(tmp_path):
    """Records shaped like OlympiadBench's (written here): a BOM, list golds with `$...$.`."""
    from arbitrage.eval.datasets import load_problems

    lines = [
        {"id": "a", "question": "Solve for the set.", "final_answer": ["$(-\\infty, 0) \\cup\\{1\\}$."]},
        {"id": "b", "question": "Give a root.", "final_answer": ["$2$", "$-3$"]},
        {"id": "c", "question": "Give the ratio.", "final_answer": ["$\\frac{3}{4}$."]},
    ]
    path = tmp_path / "olympiad.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(line) + "\n" for line in lines).encode())
    loaded = load_problems(path, fields="problem=question,answer=final_answer,id=id")
    assert loaded.errors == [] and [p.id for p in loaded] == ["a", "b", "c"]
    right = {"a": "so the set is \\boxed{(-\\infty,0)\\cup\\{1\\}}", "b": "\\boxed{-3}", "c": "\\boxed{0.75}"}
    wrong = {"a": "\\boxed{(-\\infty,0)}", "b": "\\boxed{3}", "c": "\\boxed{\\frac{4}{3}}"}
    assert [grade(right[p.id], p.answer, p.dataset) for p in loaded] == [True, True, True]
    assert [grade(wrong[p.id], p.answer, p.dataset) for p in loaded] == [False, False, False]
