"""Router training data: rows from `generate` runs, labels, splits and balancing.

A row is one step where both models wrote a candidate and the PRM scored both:
`delta = s_t - s_d`, binary label `y = 1[delta > 0]` (the paper's best variant).
Splits are by problem, so no problem's steps leak across train/validation/test.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterable, Sequence

from arbitrage.errors import InputError
from arbitrage.protocols import AnnotatedStep
from arbitrage.servers.router_input import format_router_input

SPLITS = ("train", "validation", "test")
LABEL_CLASSES = (2, 4, 10)


def rows_from_records(records: Iterable[dict]) -> list[dict]:
    """Training rows recorded by the `generate` policy, from result records."""
    rows = []
    for record in records:
        if record.get("error"):
            continue
        rows.extend(record.get("training_rows", []))
    return rows


def split_of(problem_id: str, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> str:
    """Deterministic split from a hash of the problem id (stable across reruns and machines)."""
    position = int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    cumulative = 0.0
    for name, fraction in zip(SPLITS, fractions):
        cumulative += fraction
        if position < cumulative:
            return name
    return SPLITS[-1]


def class_edges(n_classes: int) -> list[float]:
    """Bin edges on delta in [-1, 1], symmetric about 0 so the upper half of the classes
    is exactly delta > 0 (the binary label)."""
    if n_classes not in LABEL_CLASSES:
        raise ValueError(f"n_classes must be one of {LABEL_CLASSES}, got {n_classes}")
    half = n_classes // 2
    width = 1.0 / half
    return [round(-1.0 + width * i, 10) for i in range(1, half)] + [0.0] + [round(width * i, 10) for i in range(1, half)]


def delta_class(delta: float, n_classes: int) -> int:
    """Ordinal class of delta; class >= n_classes // 2 iff delta > 0."""
    edges = class_edges(n_classes)
    return sum(delta > edge for edge in edges)


def downsample_majority(rows: list[dict], seed: int) -> list[dict]:
    """Balance the binary label by dropping random rows of the larger class."""
    positives = [r for r in rows if r["label"] == 1]
    negatives = [r for r in rows if r["label"] == 0]
    rng = random.Random(seed)
    keep = min(len(positives), len(negatives))
    balanced = rng.sample(positives, keep) + rng.sample(negatives, keep)
    rng.shuffle(balanced)
    return balanced


def router_text(row: dict, *, annotate: bool = True, separator: str = "\n\n") -> str:
    previous = [AnnotatedStep(step["text"], step["source"]) for step in row["previous_steps"]]
    return format_router_input(row["problem"], previous, row["draft_step"], annotate=annotate, separator=separator)


def write_rows(path: Path, rows: Iterable[dict]) -> int:
    count = 0
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


class RouterDataError(InputError):
    """Router rows that cannot train a router; the message names the split and the counts."""


def check_both_labels(rows: Sequence[dict], where: str) -> None:
    """A router learns to tell the labels apart, so its training rows need both."""
    positives = sum(1 for row in rows if row["label"] == 1)
    if positives == 0 or positives == len(rows):
        raise RouterDataError(
            f"{where} has {positives} rows with label 1 (the target's step scored higher) and "
            f"{len(rows) - positives} with label 0; training a router needs rows of both labels "
            "(build data from more problems)"
        )


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"router data file not found: {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_split(data_dir: str | Path, split: str) -> list[dict]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return read_rows(Path(data_dir) / f"{split}.jsonl")
