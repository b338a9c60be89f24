"""Where a lab step goes wrong, to the character: dense supervision for the PRM.

`locate_error(problem, previous_steps, step)` walks the step's equation
``a op b = c`` in writing order (first operand, operator, second operand, result,
then the boxed answer of the last step) against what the checker expects, and
returns the offset of the equation in the step and of the first wrong character.
Every prefix of the step that ends before that character could still be part of
a correct step; every prefix that reaches it cannot. Malformed steps (no single
equation, a misplaced box) are not located: only their verdict is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from arbitrage.lab.checker import BOXED, EQUATION, check_step, expected_operation, parse_equation
from arbitrage.lab.task import LabProblem, apply_op


@dataclass(frozen=True)
class ErrorPosition:
    equation_start: int  # offset of the equation's first character in the step
    error: int | None  # offset of the first wrong character; None for a correct step


def _first_difference(written: str, expected: str) -> int:
    for i, (w, e) in enumerate(zip(written, expected)):
        if w != e:
            return i
    return min(len(written), len(expected))


def locate_error(problem: LabProblem | str, previous_steps: Sequence[str], step: str) -> ErrorPosition | None:
    """The equation's offset and the first wrong character's offset, or None when the
    step is malformed (its error has no single position)."""
    verdict = check_step(problem, previous_steps, step)
    if verdict.verdict == "malformed":
        return None
    match = next(EQUATION.finditer(step))
    start = match.start()
    if verdict.correct:
        return ErrorPosition(start, None)

    expected = expected_operation(problem, previous_steps)
    assert expected is not None  # a step beyond the last operation is malformed
    ea, eb = expected.a, expected.b
    written = parse_equation(step)
    a, b, result = written.a, written.b, written.result

    firsts = [ea, eb] if expected.symbol in "+*" else [ea]
    if a not in firsts:
        best = max(firsts, key=lambda v: _first_difference(match.group(1), str(v)))
        return ErrorPosition(start, match.start(1) + _first_difference(match.group(1), str(best)))
    if written.symbol != expected.symbol:
        return ErrorPosition(start, match.start(2))
    second = eb if a == ea else ea
    if b != second:
        return ErrorPosition(start, match.start(3) + _first_difference(match.group(3), str(second)))
    true_result = apply_op(expected.symbol, a, b)
    if true_result is not None and result != true_result:
        return ErrorPosition(start, match.start(4) + _first_difference(match.group(4), str(true_result)))
    box = BOXED.search(step)
    if box is not None and int(box.group(1)) != result:
        return ErrorPosition(start, box.start(1) + _first_difference(box.group(1), str(result)))
    return None  # an error the walk cannot place (e.g. an inexact division): verdict only
