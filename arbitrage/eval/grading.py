"""Final-answer extraction and math-equivalence grading.

    extract_answer("... so the total is \\boxed{\\frac{1}{2}}.")   # "\\frac{1}{2}"
    grade("... \\boxed{0.5}", "\\frac12")                          # True

Equivalence is decided by math-verify (LaTeX, fractions, sets, intervals, units),
with an exact decimal comparison for plain numbers (GSM8K: "1,000" == "1000",
"18 dollars" == "18"). `grade` never raises: odd input grades False.

Threads: math-verify's own timeouts use SIGALRM, which only works in the main
thread, so worker threads run it with timeouts off. What a timeout would catch
(power towers, huge factorials, deeply nested brackets) is refused up front by
size guards instead, so grading cannot hang a worker.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
from decimal import Decimal, InvalidOperation

import sympy
from math_verify import parse, verify

from arbitrage.graph.answer import BOX_RE, last_boxed

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 400
MAX_BRACKET_DEPTH = 10  # parse time grows steeply with nesting: depth 20 takes seconds
MAX_NUMBER_BITS = 100_000  # exact values beyond ~30k digits are not answers, and stall sympy
MAX_FACTORIAL_ARG = 10_000
MAIN_THREAD_TIMEOUT_S = 5


class _DropTimeoutDisabledWarning(logging.Filter):
    # math-verify warns once that its timeout is off; here that is deliberate (see above).
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


# --- extraction ----------------------------------------------------------------------

_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
# A lookahead, so overlapping markers ("Final Answer: The final answer is 5") all match.
_ANSWER_RE = re.compile(r"(?=\banswer\s*(?:is\b|:|=)\s*:?([^\n]*))", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")


def _strip_math_delimiters(answer: str) -> str:
    answer = answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(answer) > len(left) + len(right) and answer.startswith(left) and answer.endswith(right):
            return answer[len(left) : -len(right)].strip()
    return answer


def _clean_tail(answer: str) -> str:
    """An answer found in running text: up to the sentence end, without markup."""
    answer = answer.strip().strip("*").strip()
    end = _SENTENCE_END_RE.search(answer)
    if end:
        answer = answer[: end.start()]
    return _strip_math_delimiters(answer.rstrip(".").strip())


_TRAILING_PUNCTUATION = ".,;:"


def normalize_gold(gold: str) -> str:
    """A gold answer as datasets write it, bare: OlympiadBench's "$(-\\infty, 0)$." is
    "(-\\infty, 0)". Punctuation after (or just inside) the math delimiters and the
    delimiters themselves go; a trailing "!" stays (a factorial)."""
    bare = gold.strip().rstrip(_TRAILING_PUNCTUATION).strip()
    return _strip_math_delimiters(bare).rstrip(_TRAILING_PUNCTUATION).strip()


def extract_answer(text: str) -> str | None:
    """The final answer in `text`: the last complete \\boxed{...} / \\fbox{...}, else
    the last '#### N', else the last 'The answer is ...' / 'answer: ...'; None if none."""
    if not isinstance(text, str):
        return None
    candidates = (
        lambda: last_boxed(text),
        lambda: _last_match(_HASH_RE, text),
        lambda: _last_match(_ANSWER_RE, text),
    )
    for find in candidates:
        found = find()
        if found is not None and found.strip():
            return found.strip()
    return None


def _last_match(pattern: re.Pattern, text: str) -> str | None:
    for match in reversed(list(pattern.finditer(text))):
        cleaned = _clean_tail(match.group(1))
        if cleaned:
            return cleaned
    return None


# --- grading -------------------------------------------------------------------------


Gold = str | int | float | list[str | int | float] | None


def grade(predicted: str | int | float | None, gold: Gold, dataset: str | None = None) -> bool:
    """Whether `predicted` (a model's full text, or just an answer) matches `gold`, or
    any one of them when `gold` is a list of acceptable answers.

    A multi-line text with no answer marker (see extract_answer) grades False rather
    than guessing at its last number. `dataset="gsm8k"` compares plain numbers
    exactly and ignores unit words ("18 dollars").
    """
    golds = gold if isinstance(gold, (list, tuple)) else [gold]
    return any(_grade_one(predicted, one, dataset) for one in golds)


def _grade_one(predicted, gold, dataset: str | None) -> bool:
    try:
        return _grade(predicted, gold, dataset)
    except Exception:  # any parser/sympy failure on odd input means "not shown correct"
        logger.debug("grading failed: predicted=%r gold=%r", predicted, gold, exc_info=True)
        return False


def _grade(predicted, gold, dataset: str | None) -> bool:
    predicted, gold = _as_text(predicted), _as_text(gold)
    if predicted is None or gold is None:
        return False
    answer = extract_answer(predicted)
    if answer is None and "\n" not in predicted.strip() and not BOX_RE.search(predicted):
        # The text is itself the answer (a truncated "\boxed{5" is not: it might be 50).
        answer = _strip_math_delimiters(predicted).rstrip(".").strip()
    gold_answer = extract_answer(gold) or normalize_gold(gold)
    if not answer or not gold_answer:
        return False

    gold_number = _plain_number(gold_answer, allow_units=False)
    predicted_number = _plain_number(answer, allow_units=dataset == "gsm8k")
    if dataset == "gsm8k" and gold_number is not None and predicted_number is not None:
        return gold_number == predicted_number
    if _math_verify_equal(gold_answer, answer):
        return True
    return gold_number is not None and predicted_number is not None and gold_number == predicted_number


def _as_text(value) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


_NUMBER_RE = re.compile(
    r"(?P<number>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)\s*(?P<unit>[A-Za-z%][A-Za-z% ]*)?"
)
_TEXT_MACRO_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def _plain_number(answer: str, *, allow_units: bool) -> Decimal | None:
    """`answer` as an exact decimal if it is just a number ('1,000', '\\$18', '18.0')."""
    text = _TEXT_MACRO_RE.sub(r" \1", answer).replace("\\%", "%")
    for noise in ("\\$", "$", "\\!", "\\,", "\\;", "~"):
        text = text.replace(noise, " ")
    text = text.strip().rstrip(".").strip()
    match = _NUMBER_RE.fullmatch(text)
    if match is None or (match.group("unit") and not allow_units):
        return None
    try:
        return Decimal(match.group("number").replace(",", ""))
    except InvalidOperation:
        return None


def _as_latex(answer: str) -> str:
    answer = _strip_math_delimiters(answer)
    answer = re.sub(r"(?<!\\)\$", r"\\$", answer)  # a stray $ is a currency sign
    return "\\boxed{" + answer + "}"


def _bracket_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest


def _timeout_s() -> int | None:
    if threading.current_thread() is not threading.main_thread():
        return None
    # math-verify's alarm would cancel one the caller set (e.g. a test timeout).
    if hasattr(signal, "getitimer") and signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        return None
    return MAIN_THREAD_TIMEOUT_S


def _math_verify_equal(gold: str, answer: str) -> bool:
    for text in (gold, answer):
        if len(text) > MAX_ANSWER_CHARS or _bracket_depth(text) > MAX_BRACKET_DEPTH:
            return False
    timeout = _timeout_s()
    gold_parsed = parse(_as_latex(gold), parsing_timeout=timeout)
    answer_parsed = parse(_as_latex(answer), parsing_timeout=timeout)
    if not gold_parsed or not answer_parsed:
        return False
    if any(_too_large(expr) for expr in (*gold_parsed, *answer_parsed)):
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=timeout))


def _too_large(expr) -> bool:
    """Whether evaluating `expr` exactly would build an enormous number."""
    if not isinstance(expr, sympy.Basic):
        return False  # strings and matrices of small entries
    for node in sympy.postorder_traversal(expr):  # inner powers are vetted before outer ones
        if isinstance(node, sympy.Pow):
            base, exponent = node.args
            if not (base.is_number and exponent.is_number):
                continue
            base_size = _magnitude(base)
            if base_size in (0.0, 1.0):
                continue
            bits = _magnitude(exponent) * (abs(math.log2(base_size)) + 1)
            if not bits <= MAX_NUMBER_BITS:  # also catches inf / nan
                return True
        elif isinstance(node, sympy.factorial) and node.args[0].is_number:
            if not _magnitude(node.args[0]) <= MAX_FACTORIAL_ARG:
                return True
    return False


def _magnitude(value: sympy.Basic) -> float:
    """|value| as a float: inf when it overflows, nan when it has no value (zoo)."""
    try:
        return abs(complex(sympy.N(value)))
    except OverflowError:
        return math.inf
    except (TypeError, ValueError):
        return math.nan
