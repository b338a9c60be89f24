"""Exact step checker for the lab task.

`check_step(problem, previous_steps, step)` judges step number `len(previous_steps)`
of a solution against the problem's reference operations (recovered from the
problem text, see `task.parse_problem`):

- ``correct``: one equation ``a op b = c`` with the expected operator and operands
  and ``c`` its exact value (the last step must also box that value, and only it);
- ``wrong_operand``: the operator or an operand is not the one the problem asks for;
- ``wrong_result``: the right operands but a wrong result (or a boxed answer that
  differs from the step's result);
- ``malformed``: no equation, several equations, a box where none belongs, a last
  step without a box, or a step beyond the last operation.

"Given the previous steps": an operand that is the result of an earlier step is
expected to equal the result that earlier step *wrote* (if that step had a
readable equation), so a step that correctly carries an earlier mistake forward
is judged correct on its own; the final answer is still wrong. Operands of ``+``
and ``*`` may come in either order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

from arbitrage.lab.task import LabProblem, Operation, apply_op, parse_problem

Verdict = Literal["correct", "wrong_result", "wrong_operand", "malformed"]

EQUATION = re.compile(r"(\d+)\s*([-+*/x×÷])\s*(\d+)\s*=\s*(-?\d+)")
BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")
_SYMBOLS = {"x": "*", "×": "*", "÷": "/"}


@dataclass(frozen=True)
class StepVerdict:
    verdict: Verdict
    reason: str

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"


@dataclass(frozen=True)
class Equation:
    a: int
    symbol: str
    b: int
    result: int


def parse_equation(step: str) -> Equation | None:
    """The single equation in `step`, or None if there is none or more than one."""
    found = EQUATION.findall(step)
    if len(found) != 1:
        return None
    a, symbol, b, result = found[0]
    return Equation(int(a), _SYMBOLS.get(symbol, symbol), int(b), int(result))


def extract_boxed(text: str) -> int | None:
    """The last boxed integer in `text`."""
    found = BOXED.findall(text)
    return int(found[-1]) if found else None


def _operations(problem: LabProblem | str) -> tuple[Operation, ...]:
    text = problem.problem if isinstance(problem, LabProblem) else problem
    return parse_problem(text)


def _written_results(ops: Sequence[Operation], previous_steps: Sequence[str]) -> list[int]:
    results = []
    for i, prev in enumerate(previous_steps):
        eq = parse_equation(prev)
        results.append(eq.result if eq is not None else (ops[i].result if i < len(ops) else 0))
    return results


@dataclass(frozen=True)
class ExpectedOperation:
    """What step `index` must compute: `a symbol b`, operands as the earlier steps wrote them."""

    index: int
    n_operations: int
    symbol: str
    a: int
    b: int

    @property
    def is_last(self) -> bool:
        return self.index == self.n_operations - 1


def expected_operation(problem: LabProblem | str, previous_steps: Sequence[str]) -> ExpectedOperation | None:
    """The operation the next step must write, or None when every operation is done."""
    ops = _operations(problem)
    index = len(previous_steps)
    if index >= len(ops):
        return None
    written = _written_results(ops, previous_steps)

    def resolve(operand) -> int:
        return operand.value if operand.kind == "lit" else written[operand.value]

    op = ops[index]
    return ExpectedOperation(index, len(ops), op.symbol, resolve(op.a), resolve(op.b))


def check_step(problem: LabProblem | str, previous_steps: Sequence[str], step: str) -> StepVerdict:
    """Judge one written step given the problem and the steps before it."""
    expected = expected_operation(problem, previous_steps)
    if expected is None:
        n_ops = len(_operations(problem))
        return StepVerdict("malformed", f"step {len(previous_steps) + 1} is beyond the last of {n_ops} operations")
    found = EQUATION.findall(step)
    if not found:
        return StepVerdict("malformed", "no equation 'a op b = c' in the step")
    if len(found) > 1:
        return StepVerdict("malformed", f"{len(found)} equations in one step")
    eq = parse_equation(step)
    assert eq is not None
    boxes = BOXED.findall(step)
    is_last = expected.is_last
    if is_last and not boxes:
        return StepVerdict("malformed", "the last step must give the answer as \\boxed{N}")
    if not is_last and boxes:
        return StepVerdict("malformed", f"an answer is boxed at step {expected.index + 1} of {expected.n_operations}")
    if len(boxes) > 1:
        return StepVerdict("malformed", "more than one boxed answer")

    ea, eb = expected.a, expected.b
    if eq.symbol != expected.symbol:
        return StepVerdict("wrong_operand", f"expected operator {expected.symbol!r}, got {eq.symbol!r}")
    got = (eq.a, eq.b)
    ok = got == (ea, eb) or (expected.symbol in "+*" and got == (eb, ea))
    if not ok:
        return StepVerdict("wrong_operand", f"expected {ea} {expected.symbol} {eb}, got {eq.a} {eq.symbol} {eq.b}")
    true_result = apply_op(eq.symbol, eq.a, eq.b)
    if true_result is None:
        return StepVerdict("wrong_result", f"{eq.a} / {eq.b} is not exact")
    if eq.result != true_result:
        return StepVerdict("wrong_result", f"{eq.a} {eq.symbol} {eq.b} = {true_result}, not {eq.result}")
    if is_last and int(boxes[0]) != eq.result:
        return StepVerdict("wrong_result", f"boxed {boxes[0]} but the step computed {eq.result}")
    return StepVerdict("correct", "right operands and result")


def check_solution(problem: LabProblem | str, steps: Sequence[str]) -> list[StepVerdict]:
    """The verdict of every step, each given the steps before it."""
    return [check_step(problem, steps[:i], s) for i, s in enumerate(steps)]


def answer_correct(problem: LabProblem, solution_text: str) -> bool:
    """Whether the last boxed integer of a solution is the problem's answer."""
    return extract_boxed(solution_text) == problem.answer
