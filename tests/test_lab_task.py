"""Lab task generator and exact step checker."""

from arbitrage.config import LAB_PROMPT_TEMPLATE
from arbitrage.lab.checker import check_solution, check_step, parse_equation
from arbitrage.lab.task import PROMPT_TEMPLATE, generate_problems, make_splits, parse_problem


def test_prompt_template_matches_config():
    assert PROMPT_TEMPLATE == LAB_PROMPT_TEMPLATE


def test_generation_is_seeded_and_deterministic():
    a = generate_problems(50, seed=7)
    b = generate_problems(50, seed=7)
    c = generate_problems(50, seed=8)
    assert [p.problem for p in a] == [p.problem for p in b]
    assert [p.problem for p in a] != [p.problem for p in c]


def test_problems_take_2_to_6_ops_and_reference_solution_checks():
    problems = generate_problems(400, seed=1)
    counts = {p.num_ops for p in problems}
    assert counts == {2, 3, 4, 5, 6}
    assert {p.difficulty for p in problems} == {1, 2, 3, 4}
    for p in problems:
        assert parse_problem(p.problem) == p.operations
        assert all(v.correct for v in check_solution(p, list(p.steps)))
        assert f"\\boxed{{{p.answer}}}" in p.steps[-1]
        for op in p.operations:
            assert 0 < op.result <= 999
        for s in p.steps:
            assert parse_equation(s) is not None


def test_difficulty_level_is_respected():
    for p in generate_problems(40, seed=2, difficulty=4):
        assert p.difficulty == 4 and 5 <= p.num_ops <= 6


def test_splits_are_disjoint():
    train, val, test = make_splits(0, n_train=3000, n_validation=200, n_test=300)
    texts = [set(p.problem for p in s) for s in (train, val, test)]
    assert len(texts[0]) == 3000 and len(texts[1]) == 200 and len(texts[2]) == 300
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    # test split does not depend on the train size
    assert [p.problem for p in make_splits(0, n_train=10, n_validation=200, n_test=300)[2]] == [p.problem for p in test]


PROBLEM = ("Ann has 34 apples. Ann buys 3 bags of 12 apples. Ben has 5 apples. Ann sells 20 apples. "
           "How many apples does Ann have now?")


def test_checker_verdicts():
    steps = ["3 bags of 12: 3 * 12 = 36.", "Adds them: 34 + 36 = 70.", "Sells 20: 70 - 20 = 50. The answer is \\boxed{50}."]
    assert [v.verdict for v in check_solution(PROBLEM, steps)] == ["correct"] * 3
    assert check_step(PROBLEM, [], "12 * 3 = 36.").correct  # commutative order
    assert check_step(PROBLEM, [], "3 bags of 12: 3 * 12 = 38.").verdict == "wrong_result"
    assert check_step(PROBLEM, [], "3 bags of 12: 3 + 12 = 15.").verdict == "wrong_operand"
    assert check_step(PROBLEM, steps[:1], "Adds them: 34 + 5 = 39.").verdict == "wrong_operand"  # distractor
    assert check_step(PROBLEM, [], "three bags of twelve").verdict == "malformed"
    assert check_step(PROBLEM, [], "3 * 12 = 36 and 34 + 36 = 70").verdict == "malformed"
    assert check_step(PROBLEM, steps[:2], "Sells 20: 70 - 20 = 50.").verdict == "malformed"  # no box
    assert check_step(PROBLEM, [], "3 * 12 = 36. \\boxed{36}").verdict == "malformed"  # early box
    assert check_step(PROBLEM, steps, "50 + 1 = 51").verdict == "malformed"  # beyond the last op
    assert check_step(PROBLEM, steps[:2], "70 - 20 = 50. \\boxed{51}").verdict == "wrong_result"
    # a step that correctly carries an earlier mistake is judged on its own
    assert check_step(PROBLEM, ["3 * 12 = 38."], "34 + 38 = 72.").correct
    assert check_step(PROBLEM, ["3 * 12 = 38."], "34 + 36 = 70.").verdict == "wrong_operand"
