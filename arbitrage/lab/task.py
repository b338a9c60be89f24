"""The lab task: seeded arithmetic word problems solved one operation per step.

A problem tells a short story about one person's collection of one kind of item
("Ann has 34 apples. Ann buys 3 bags of 12 apples. ..."), then asks how many they
have at the end. Each event is one or two operations on the running total:

- add / sub:   "buys 17 more apples", "sells 12 apples"            (1 op)
- pack_add:    "buys 3 bags of 12 apples"        -> 3 * 12, then +   (2 ops)
- pack_sub:    "gives 4 friends 6 apples each"   -> 4 * 6, then -    (2 ops)
- frac:        "gives away one third of the apples" -> t / 3, then t - that (2 ops)
- mul:         "ends up with 3 times as many apples"                 (1 op)
- div:         "splits the apples into 4 equal piles and keeps one"  (1 op)

Higher difficulty adds operations, larger numbers and distractor sentences
(another person's items, bags of a different item, a price in dollars), so a
solver must read which quantities matter and which operation each sentence asks
for, as well as do the arithmetic. All values stay in 1..999 and every division
is exact.

The reference solution has one step per operation, each a short sentence plus
``a op b = c``; the last step also gives ``\\boxed{answer}``. The problem text alone
determines the solution: `parse_problem` recovers the operations from the text,
and the checker uses it, so a problem given as a string checks the same way.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

# Same text as arbitrage.config.LAB_PROMPT_TEMPLATE (a test keeps them equal); kept
# here so the lab trains where the config's dependencies are not installed.
PROMPT_TEMPLATE = "Question: {problem}\nAnswer:\n"
SEPARATOR = "\n\n"

DIFFICULTIES = (1, 2, 3, 4)
# difficulty -> (min ops, max ops, max value, max distractor sentences)
LEVELS = {
    1: (2, 3, 99, 0),
    2: (3, 4, 300, 1),
    3: (4, 5, 999, 1),
    4: (5, 6, 999, 2),
}

NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kim", "Lea",
         "Max", "Nia", "Omar", "Pia", "Raj", "Sam", "Tia", "Uma", "Vic", "Wes", "Yan", "Zoe")
ITEMS = ("apples", "marbles", "stickers", "coins", "cards", "books", "shells", "pens",
         "beads", "stamps", "rocks", "eggs")
FRACTIONS = {2: "half", 3: "third", 4: "quarter", 5: "fifth"}
FRACTION_DENOM = {v: k for k, v in FRACTIONS.items()}

OP_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def apply_op(symbol: str, a: int, b: int) -> int | None:
    """The exact result of `a symbol b`, or None for an inexact division."""
    if symbol == "+":
        return a + b
    if symbol == "-":
        return a - b
    if symbol == "*":
        return a * b
    if symbol == "/":
        if b == 0 or a % b:
            return None
        return a // b
    raise ValueError(f"unknown operator {symbol!r}")


@dataclass(frozen=True)
class Operand:
    """A literal number from the problem text, or the result of an earlier step."""

    kind: str  # "lit" | "ref"
    value: int  # the literal, or the index of the earlier step

    @staticmethod
    def lit(v: int) -> "Operand":
        return Operand("lit", v)

    @staticmethod
    def ref(i: int) -> "Operand":
        return Operand("ref", i)


@dataclass(frozen=True)
class Operation:
    """One reference step: `a symbol b = result`, with operands tied to their source."""

    symbol: str
    a: Operand
    b: Operand
    result: int


@dataclass(frozen=True)
class LabProblem:
    id: str
    problem: str
    steps: tuple[str, ...]
    answer: int
    difficulty: int
    operations: tuple[Operation, ...] = field(default=(), compare=False, repr=False)

    @property
    def num_ops(self) -> int:
        return len(self.steps)

    def prompt(self) -> str:
        return format_prompt(self.problem)

    def solution(self) -> str:
        """Reference steps joined by the separator (no trailing separator)."""
        return SEPARATOR.join(self.steps)


def format_prompt(problem: str) -> str:
    return PROMPT_TEMPLATE.replace("{problem}", problem)


# --- sentences -------------------------------------------------------------------------
# Each event kind: the problem sentences that state it, and the step sentences that solve it.
ADD_VERBS = ("buys", "finds", "gets")
SUB_VERBS = ("gives away", "loses", "sells")
ADD_TEXT = {"buys": "{N} buys {b} more {X}.", "finds": "{N} finds {b} more {X}.",
            "gets": "{N} gets {b} more {X} from a friend."}
SUB_TEXT = {"gives away": "{N} gives away {b} {X}.", "loses": "{N} loses {b} {X}.",
            "sells": "{N} sells {b} {X}."}
STEP_ADD = {"buys": "Buys {b} more", "finds": "Finds {b} more", "gets": "Gets {b} more"}
STEP_SUB = {"gives away": "Gives away {b}", "loses": "Loses {b}", "sells": "Sells {b}"}
PACK_ADD_TEXT = "{N} buys {k} bags of {m} {X}."
PACK_ADD_PRICE_TEXT = "{N} buys {k} bags of {m} {X} for {d} dollars."
PACK_SUB_TEXT = "{N} gives {k} friends {m} {X} each."
MUL_TEXT = "{N} ends up with {k} times as many {X}."
DIV_TEXT = "{N} splits the {X} into {k} equal piles and keeps one pile."
FRAC_TEXT = "{N} gives away one {f} of the {X}."
START_TEXT = "{N} has {v} {X}."
QUESTION_TEXT = "How many {X} does {N} have now?"
DISTRACT_OTHER = "{O} has {d} {X}."  # another person's items
DISTRACT_PACK = "{N} buys {k} bags of {m} {Y}."  # a different item
DISTRACT_LOSS = "{N} loses {d} {Y}."  # a different item


def _eq(a: int, symbol: str, b: int, r: int) -> str:
    return f"{a} {symbol} {b} = {r}"


class _Builder:
    """Accumulates the problem's sentences, operations and reference steps."""

    def __init__(self, start: int):
        self.total_operand = Operand.lit(start)
        self.total = start
        self.sentences: list[str] = []
        self.ops: list[Operation] = []
        self.steps: list[str] = []

    def op(self, symbol: str, a: Operand, av: int, b: Operand, bv: int, sentence: str) -> int:
        r = apply_op(symbol, av, bv)
        assert r is not None and 0 < r <= 999, (symbol, av, bv, r)
        self.ops.append(Operation(symbol, a, b, r))
        self.steps.append(f"{sentence}: {_eq(av, symbol, bv, r)}.")
        return r

    def total_op(self, symbol: str, b: Operand, bv: int, sentence: str) -> None:
        r = self.op(symbol, self.total_operand, self.total, b, bv, sentence)
        self.total_operand = Operand.ref(len(self.ops) - 1)
        self.total = r


def _event_options(t: int, vmax: int, remaining: int, level: int) -> list[str]:
    small = level == 1
    opts = []
    if vmax - t >= 2:
        opts.append("add")
    if t >= 3:
        opts.append("sub")
    if any(t * k <= vmax for k in range(2, 10)):
        opts.append("mul")
    if any(t % k == 0 and t // k >= 2 for k in range(2, 10)):
        opts.append("div")
    if remaining >= 2:
        if vmax - t >= 4:
            opts.append("pack_add")
        if t >= 5:
            opts.append("pack_sub")
        if not small and any(t % k == 0 for k in FRACTIONS):
            opts.append("frac")
    return opts


def _sentence(template: str, **kw) -> str:
    return template.format(**kw)


def generate_problem(rng: random.Random, difficulty: int, index: int = 0, id_prefix: str = "lab") -> LabProblem:
    """One problem at `difficulty` (1-4), drawn from `rng`."""
    if difficulty not in LEVELS:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty}")
    lo, hi, vmax, max_distract = LEVELS[difficulty]
    while True:
        problem = _try_generate(rng, difficulty, lo, hi, vmax, max_distract, index, id_prefix)
        if problem is not None:
            return problem


def _try_generate(rng, difficulty, lo, hi, vmax, max_distract, index, id_prefix) -> LabProblem | None:
    n_ops = rng.randint(lo, hi)
    name = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    start = rng.randint(5, 60) if difficulty == 1 else rng.randint(12, min(vmax, 400))
    bld = _Builder(start)
    bld.sentences.append(_sentence(START_TEXT, N=name, v=start, X=item))
    small_b = 40 if difficulty == 1 else 300
    while len(bld.ops) < n_ops:
        remaining = n_ops - len(bld.ops)
        opts = _event_options(bld.total, vmax, remaining, difficulty)
        if not opts:
            return None
        kind = rng.choice(opts)
        t = bld.total
        if kind == "add":
            verb = rng.choice(ADD_VERBS)
            b = rng.randint(2, min(small_b, vmax - t))
            bld.sentences.append(_sentence(ADD_TEXT[verb], N=name, b=b, X=item))
            bld.total_op("+", Operand.lit(b), b, STEP_ADD[verb].format(b=b))
        elif kind == "sub":
            verb = rng.choice(SUB_VERBS)
            b = rng.randint(1, min(small_b, t - 1))
            bld.sentences.append(_sentence(SUB_TEXT[verb], N=name, b=b, X=item))
            bld.total_op("-", Operand.lit(b), b, STEP_SUB[verb].format(b=b))
        elif kind == "mul":
            k = rng.choice([k for k in range(2, 10) if t * k <= vmax])
            bld.sentences.append(_sentence(MUL_TEXT, N=name, k=k, X=item))
            bld.total_op("*", Operand.lit(k), k, f"{k} times as many")
        elif kind == "div":
            k = rng.choice([k for k in range(2, 10) if t % k == 0 and t // k >= 2])
            bld.sentences.append(_sentence(DIV_TEXT, N=name, k=k, X=item))
            bld.total_op("/", Operand.lit(k), k, f"Keeps one of {k} piles")
        elif kind in ("pack_add", "pack_sub"):
            room = vmax - t if kind == "pack_add" else t - 1
            pairs = [(k, m) for k in range(2, 10) for m in range(2, 60) if k * m <= room]
            if not pairs:
                return None
            k, m = rng.choice(pairs)
            if kind == "pack_add":
                price = difficulty >= 3 and rng.random() < 0.3
                if price:
                    text = _sentence(PACK_ADD_PRICE_TEXT, N=name, k=k, m=m, X=item, d=rng.randint(2, 99))
                else:
                    text = _sentence(PACK_ADD_TEXT, N=name, k=k, m=m, X=item)
                first, second, symbol = f"{k} bags of {m}", "Adds them", "+"
            else:
                text = _sentence(PACK_SUB_TEXT, N=name, k=k, m=m, X=item)
                first, second, symbol = f"{k} friends get {m} each", "Gives them away", "-"
            bld.sentences.append(text)
            p = bld.op("*", Operand.lit(k), k, Operand.lit(m), m, first)
            bld.total_op(symbol, Operand.ref(len(bld.ops) - 1), p, second)
        elif kind == "frac":
            k = rng.choice([k for k in FRACTIONS if t % k == 0])
            bld.sentences.append(_sentence(FRAC_TEXT, N=name, f=FRACTIONS[k], X=item))
            total_operand = bld.total_operand
            p = bld.op("/", total_operand, t, Operand.lit(k), k, f"One {FRACTIONS[k]} of {t}")
            bld.total_op("-", Operand.ref(len(bld.ops) - 1), p, "Gives them away")
        else:  # pragma: no cover
            raise AssertionError(kind)
    # distractor sentences, inserted between events (never first or last)
    n_distract = rng.randint(max_distract // 2, max_distract) if max_distract else 0
    for _ in range(n_distract):
        other_item = rng.choice([i for i in ITEMS if i != item])
        kind = rng.choice(("other", "pack", "loss"))
        if kind == "other":
            other = rng.choice([n for n in NAMES if n != name])
            text = _sentence(DISTRACT_OTHER, O=other, d=rng.randint(2, 400), X=item)
        elif kind == "pack":
            text = _sentence(DISTRACT_PACK, N=name, k=rng.randint(2, 9), m=rng.randint(2, 40), Y=other_item)
        else:
            text = _sentence(DISTRACT_LOSS, N=name, d=rng.randint(2, 90), Y=other_item)
        pos = rng.randint(1, len(bld.sentences))
        bld.sentences.insert(pos, text)
    bld.sentences.append(_sentence(QUESTION_TEXT, X=item, N=name))
    steps = list(bld.steps)
    steps[-1] = steps[-1] + f" The answer is \\boxed{{{bld.total}}}."
    text = " ".join(bld.sentences)
    return LabProblem(
        id=f"{id_prefix}-{index}",
        problem=text,
        steps=tuple(steps),
        answer=bld.total,
        difficulty=difficulty,
        operations=tuple(bld.ops),
    )


def generate_problems(n: int, seed: int, difficulty: int | None = None, id_prefix: str = "lab") -> list[LabProblem]:
    """`n` problems from `seed`; `difficulty=None` cycles through all levels."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        level = difficulty if difficulty is not None else DIFFICULTIES[i % len(DIFFICULTIES)]
        out.append(generate_problem(rng, level, index=i, id_prefix=id_prefix))
    return out


def make_splits(
    seed: int, n_train: int = 20000, n_validation: int = 500, n_test: int = 1000
) -> tuple[list[LabProblem], list[LabProblem], list[LabProblem]]:
    """Train / validation / test splits that never share a problem text.

    Test and validation come from their own seeded streams (so they do not change
    when `n_train` does); train is drawn from a third stream, skipping any text
    already in validation or test. Duplicates within a split are dropped too.
    """
    seen: set[str] = set()

    def draw(n: int, stream_seed: int, prefix: str) -> list[LabProblem]:
        rng = random.Random(stream_seed)
        out: list[LabProblem] = []
        i = 0
        while len(out) < n:
            level = DIFFICULTIES[i % len(DIFFICULTIES)]
            p = generate_problem(rng, level, index=len(out), id_prefix=prefix)
            i += 1
            if p.problem in seen:
                continue
            seen.add(p.problem)
            out.append(p)
        return out

    test = draw(n_test, seed * 1000 + 3, "test")
    validation = draw(n_validation, seed * 1000 + 2, "val")
    train = draw(n_train, seed * 1000 + 1, "train")
    return train, validation, test


# --- parsing the text back -----------------------------------------------------------
_NUM = r"(\d+)"
_WORD = r"([A-Za-z]+)"


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for key in ("b", "k", "m", "d", "v"):
        pattern = pattern.replace(re.escape("{" + key + "}"), f"(?P<{key}>\\d+)")
    for key in ("N", "X", "Y", "O", "f"):
        pattern = pattern.replace(re.escape("{" + key + "}"), f"(?P<{key}>[A-Za-z]+)")
    return re.compile(f"^{pattern}$")


_PATTERNS: list[tuple[str, str, re.Pattern]] = (
    [("add", v, _template_regex(t)) for v, t in ADD_TEXT.items()]
    + [("sub", v, _template_regex(t)) for v, t in SUB_TEXT.items()]
    + [
        ("pack_add", "", _template_regex(PACK_ADD_PRICE_TEXT)),
        ("pack_add", "", _template_regex(PACK_ADD_TEXT)),
        ("pack_sub", "", _template_regex(PACK_SUB_TEXT)),
        ("mul", "", _template_regex(MUL_TEXT)),
        ("div", "", _template_regex(DIV_TEXT)),
        ("frac", "", _template_regex(FRAC_TEXT)),
        ("has", "", _template_regex(START_TEXT)),
        ("question", "", _template_regex(QUESTION_TEXT)),
    ]
)


class ProblemParseError(ValueError):
    pass


@lru_cache(maxsize=65536)
def parse_problem(text: str) -> tuple[Operation, ...]:
    """The reference operations of a problem, recovered from its text alone."""
    sentences = [s.strip() for s in re.findall(r"[^.?]+[.?]", text)]
    if not sentences:
        raise ProblemParseError("no sentences")
    name = item = None
    ops: list[Operation] = []
    total_operand: Operand | None = None
    total = 0

    def do(symbol, a, av, b, bv):
        r = apply_op(symbol, av, bv)
        if r is None:
            raise ProblemParseError(f"inexact division {av} / {bv}")
        ops.append(Operation(symbol, a, b, r))
        return r

    for s in sentences:
        for kind, _verb, pattern in _PATTERNS:
            m = pattern.match(s)
            if m:
                break
        else:
            raise ProblemParseError(f"unrecognised sentence: {s!r}")
        g = m.groupdict()
        if kind == "has":
            if name is None:
                name, item = g["N"], g["X"]
                total_operand, total = Operand.lit(int(g["v"])), int(g["v"])
            continue  # another person's items: a distractor
        if name is None:
            raise ProblemParseError("the problem must start with what someone has")
        if kind == "question":
            continue
        if g.get("N") != name or g.get("X") != item:
            continue  # another person's action or another item: a distractor
        if kind in ("add", "sub", "mul", "div"):
            value = int(g["b"] if kind in ("add", "sub") else g["k"])
            total = do(OP_SYMBOL[kind], total_operand, total, Operand.lit(value), value)
            total_operand = Operand.ref(len(ops) - 1)
        elif kind in ("pack_add", "pack_sub"):
            k, mm = int(g["k"]), int(g["m"])
            p = do("*", Operand.lit(k), k, Operand.lit(mm), mm)
            total = do("+" if kind == "pack_add" else "-", total_operand, total, Operand.ref(len(ops) - 1), p)
            total_operand = Operand.ref(len(ops) - 1)
        elif kind == "frac":
            k = FRACTION_DENOM.get(g["f"])
            if k is None:
                raise ProblemParseError(f"unknown fraction {g['f']!r}")
            p = do("/", total_operand, total, Operand.lit(k), k)
            total = do("-", total_operand, total, Operand.ref(len(ops) - 1), p)
            total_operand = Operand.ref(len(ops) - 1)
    if not ops:
        raise ProblemParseError("the problem asks for no operation")
    return tuple(ops)
