"""Benchmark problems: GSM8K, MATH500, any JSONL given a field mapping, the lab splits.

    loaded = load_problems("data/gsm8k_test.jsonl", limit=50)
    for err in loaded.errors: print(err)        # "line 7: missing field 'question'"

A bad line (invalid JSON, a missing, empty or non-string problem field, an
unparseable gold answer, a repeated id) is reported in `.errors` and skipped, so
one broken record never costs a whole run. A gold answer may be a list of acceptable
answers (OlympiadBench's `final_answer`); grading accepts a match with any of them.
A byte-order mark at the start of a line is ignored.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from arbitrage.errors import InputError

DATASETS = ("gsm8k", "math500", "generic", "lab")
DATASET_ALIASES = {"jsonl": "generic", "math": "math500"}
FIELD_KEYS = ("problem", "answer", "id")
LAB_SPLITS = ("train", "validation", "test")

# dataset -> (hub repo, config, split), used when the source is not a local file.
HUB_DATASETS: dict[str, tuple[str, str | None, str]] = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
}

class DatasetError(InputError):
    """A source that cannot be loaded at all; the message names the path, dataset or field."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The source path does not exist (and is not a known hub dataset)."""


@dataclass
class Problem:
    id: str
    problem: str
    answer: str | list[str] | None  # a list holds every acceptable answer (e.g. OlympiadBench)
    dataset: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LineError:
    line_no: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.message}"


@dataclass
class LoadedProblems:
    problems: list[Problem]
    errors: list[LineError]
    dataset: str
    source: str

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)


class _BadRecord(Exception):
    pass


def _gsm8k_gold(value: str, answer_field: str) -> str:
    head, sep, tail = value.rpartition("####")
    if not sep:
        raise _BadRecord(f"field '{answer_field}' has no '#### <answer>' final answer")
    gold = tail.strip().replace(",", "")
    if not gold:
        raise _BadRecord(f"field '{answer_field}' is empty after '####'")
    return gold


@dataclass(frozen=True)
class _Format:
    problem: str
    answer: str
    id_fields: tuple[str, ...]


_FORMATS = {
    "gsm8k": _Format("question", "answer", ("idx", "id")),
    "math500": _Format("problem", "answer", ("unique_id", "id")),
    "generic": _Format("problem", "answer", ("id",)),
}


def parse_field_mapping(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """`"problem=q,answer=a,id=uid"` (or a dict) -> `{"problem": "q", ...}`, checked."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        pairs = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise DatasetError(f"field mapping item {item!r} is not KEY=FIELD (e.g. 'problem=question')")
            pairs[key.strip()] = value.strip()
        spec = pairs
    mapping = dict(spec)
    for key, value in mapping.items():
        if key not in FIELD_KEYS:
            raise DatasetError(f"unknown field mapping key {key!r}; expected one of {', '.join(FIELD_KEYS)}")
        if not isinstance(value, str) or not value:
            raise DatasetError(f"field mapping for {key!r} must name a field, got {value!r}")
    return mapping


def load_problems(
    source: str | os.PathLike,
    *,
    dataset: str = "auto",
    fields: str | Mapping[str, str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> LoadedProblems:
    """Problems from a JSONL path, a hub dataset (gsm8k/math500, when no such path
    exists), or a lab split (`dataset="lab"`, source train/validation/test, from `seed`).

    `dataset="auto"` detects GSM8K (question + answer ending '#### N') or MATH
    (problem + answer); other files need `fields` (dict or "problem=q,answer=a").
    """
    dataset = DATASET_ALIASES.get(dataset, dataset)
    if dataset != "auto" and dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; expected auto or one of {', '.join(DATASETS)}")
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    mapping = parse_field_mapping(fields)
    if limit == 0:
        return LoadedProblems([], [], dataset, str(source))
    if dataset == "lab":
        return _load_lab(str(source), seed=seed, limit=limit)

    path = Path(source)
    if path.is_dir():
        raise DatasetError(f"{path} is a directory; expected a JSONL file")
    if path.exists():
        return _load_records(_jsonl_records(path), str(path), dataset, mapping, limit)

    hub_name = dataset if dataset in HUB_DATASETS else str(source) if str(source) in HUB_DATASETS else None
    if hub_name is not None:
        records = _hub_records(str(source), hub_name)
        return _load_records(records, str(source), hub_name, mapping, limit)
    hint = " (for a lab split pass dataset='lab')" if str(source) in LAB_SPLITS else ""
    raise DatasetNotFoundError(f"dataset file not found: {path}{hint}")


# --- reading -------------------------------------------------------------------------


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line_no, decoded object or _BadRecord) per non-blank line."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, _BadRecord(f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            text = text.removeprefix("\ufeff")  # a byte-order mark, as some editors write (also mid-file, after cat)
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                yield line_no, _BadRecord(f"invalid JSON: {exc.msg} (column {exc.colno})")


def _hub_records(source: str, dataset: str) -> Iterator[tuple[int, Any]]:
    repo, config, split = HUB_DATASETS[dataset]
    if source != dataset:
        repo = source
    local_hint = f"pass a local JSONL path instead (e.g. load_problems('path/to/{dataset}.jsonl'))"
    if importlib.util.find_spec("datasets") is None:
        raise DatasetNotFoundError(
            f"{source!r} is not a file, and loading {dataset} from the Hugging Face hub ({repo}) needs the "
            f"optional 'datasets' package, which is not installed; {local_hint}"
        )
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DatasetNotFoundError(f"{source!r} is not a file and the Hugging Face hub is set offline; {local_hint}")
    hf_datasets = importlib.import_module("datasets")
    try:
        rows = hf_datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # offline, unknown repo, auth: all mean "use a local file"
        raise DatasetNotFoundError(
            f"could not load {repo} ({split}) from the Hugging Face hub: {type(exc).__name__}: {exc}; {local_hint}"
        ) from exc
    return ((i, dict(row)) for i, row in enumerate(rows, start=1))


def _detect(record: Mapping, mapping: Mapping[str, str]) -> str | None:
    question, answer = mapping.get("problem", "question"), mapping.get("answer", "answer")
    if "problem" in mapping or "answer" in mapping:
        # An explicit mapping still gets GSM8K's '####' parsing when the data has it.
        value = record.get(answer)
        return "gsm8k" if isinstance(value, str) and "####" in value else "generic"
    value = record.get(answer)
    if question in record and isinstance(value, str) and "####" in value:
        return "gsm8k"
    if "problem" in record and "answer" in record:
        return "math500"
    return None


def _load_records(
    records: Iterable[tuple[int, Any]],
    source: str,
    dataset: str,
    mapping: Mapping[str, str],
    limit: int | None,
) -> LoadedProblems:
    problems: list[Problem] = []
    errors: list[LineError] = []
    seen_ids: dict[str, int] = {}
    for line_no, record in records:
        if isinstance(record, dict) and dataset == "auto":
            detected = _detect(record, mapping)
            if detected is None:
                raise DatasetError(
                    f"cannot tell the format of {source}: line {line_no} has fields {sorted(record)}; expected "
                    "GSM8K (question, answer ending '#### N') or MATH (problem, answer), or pass "
                    "fields='problem=FIELD,answer=FIELD'"
                )
            dataset = detected
        try:
            if isinstance(record, _BadRecord):
                raise record
            if not isinstance(record, dict):
                raise _BadRecord(f"expected a JSON object, got {type(record).__name__}")
            problem = _to_problem(record, line_no, dataset, mapping)
            if problem.id in seen_ids:
                raise _BadRecord(f"duplicate id {problem.id!r} (first on line {seen_ids[problem.id]})")
        except _BadRecord as exc:
            errors.append(LineError(line_no, str(exc)))
            continue
        seen_ids[problem.id] = line_no
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    if dataset == "auto":  # no JSON object at all
        first = f"; first error: {errors[0]}" if errors else ""
        raise DatasetError(f"{source} has no JSON records to load{first}")
    return LoadedProblems(problems, errors, dataset, source)


def _to_problem(record: dict, line_no: int, dataset: str, mapping: Mapping[str, str]) -> Problem:
    fmt = _FORMATS[dataset]
    problem_field = mapping.get("problem", fmt.problem)
    answer_field = mapping.get("answer", fmt.answer)
    id_fields = (mapping["id"],) if "id" in mapping else fmt.id_fields

    text = record.get(problem_field)
    if problem_field not in record:
        raise _BadRecord(f"missing field '{problem_field}'")
    if not isinstance(text, str):
        raise _BadRecord(f"field '{problem_field}' must be a string, got {type(text).__name__}")
    if not text.strip():
        raise _BadRecord(f"field '{problem_field}' is empty")

    metadata = {k: v for k, v in record.items() if k not in (problem_field, answer_field)}
    answer = _gold_answer(record, answer_field, dataset, metadata)
    return Problem(_problem_id(record, id_fields, dataset, line_no), text, answer, dataset, metadata)


def _gold_answer(record: dict, answer_field: str, dataset: str, metadata: dict) -> str | list[str] | None:
    if answer_field not in record or record[answer_field] is None:
        return None  # unlabelled problems are fine; they are just not graded
    value = record[answer_field]
    if isinstance(value, list):
        return _gold_list(value, answer_field)
    if not _scalar_answer(value):
        raise _BadRecord(
            f"field '{answer_field}' must be a string, a number or a list of them, got {type(value).__name__}"
        )
    if dataset == "gsm8k" and isinstance(value, str):
        metadata["solution"] = value.rpartition("####")[0].strip()
        return _gsm8k_gold(value, answer_field)
    answer = str(value).strip()
    if not answer:
        raise _BadRecord(f"field '{answer_field}' is empty")
    return answer


def _scalar_answer(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _gold_list(values: list, answer_field: str) -> list[str]:
    """Every acceptable answer; a prediction matching any one of them is correct."""
    if not values:
        raise _BadRecord(f"field '{answer_field}' is an empty list")
    answers = []
    for index, value in enumerate(values):
        if not _scalar_answer(value):
            raise _BadRecord(f"field '{answer_field}' item {index} must be a string or number, got {type(value).__name__}")
        answer = str(value).strip()
        if not answer:
            raise _BadRecord(f"field '{answer_field}' item {index} is empty")
        answers.append(answer)
    return answers


def _problem_id(record: dict, id_fields: tuple[str, ...], dataset: str, line_no: int) -> str:
    for name in id_fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{dataset}-{value}"
    # Row index: for GSM8K this equals its 'idx', so file and hub ids agree.
    return f"{dataset}-{line_no - 1}"


# --- the lab task --------------------------------------------------------------------


def _load_lab(split: str, *, seed: int, limit: int | None) -> LoadedProblems:
    split = {"val": "validation"}.get(split, split)
    if split not in LAB_SPLITS:
        raise DatasetError(f"lab split must be one of {', '.join(LAB_SPLITS)}; got {split!r}")
    try:
        task = importlib.import_module("arbitrage.lab.task")
    except ImportError as exc:
        raise DatasetError(f"dataset='lab' needs arbitrage.lab.task, which failed to import: {exc}") from exc
    make_splits: Callable = task.make_splits
    # Test and validation do not depend on the train size, so skip drawing 20k train problems.
    train, validation, test = make_splits(seed) if split == "train" else make_splits(seed, n_train=0)
    chosen = {"train": train, "validation": validation, "test": test}[split]
    if limit is not None:
        chosen = chosen[:limit]
    problems = [
        Problem(
            id=p.id,
            problem=p.problem,
            answer=str(p.answer),
            dataset="lab",
            metadata={"difficulty": p.difficulty, "steps": list(p.steps), "split": split, "seed": seed},
        )
        for p in chosen
    ]
    return LoadedProblems(problems, [], "lab", f"lab:{split}@seed={seed}")
