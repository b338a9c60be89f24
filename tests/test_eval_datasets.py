"""Loading benchmark problems: real GSM8K / MATH500 lines, field mappings, bad lines,
missing files, the hub path (with a stand-in `datasets` module) and the lab splits."""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
import types
from pathlib import Path

import pytest

from arbitrage.eval.datasets import (
    DATASETS,
    DatasetError,
    DatasetNotFoundError,
    LineError,
    Problem,
    load_problems,
    parse_field_mapping,
)

DATA_DIR = Path(os.environ.get("ARBITRAGE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
GSM8K = DATA_DIR / "gsm8k_test.jsonl"
MATH500 = DATA_DIR / "math500.jsonl"
needs_data = pytest.mark.skipif(not (GSM8K.exists() and MATH500.exists()), reason=f"benchmark data not in {DATA_DIR}")


def raw_lines(path: Path, n: int) -> list[dict]:
    with path.open() as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@needs_data
def test_gsm8k_first_lines_parse_question_and_gold_after_hashes():
    loaded = load_problems(GSM8K, limit=5)
    raw = raw_lines(GSM8K, 5)
    assert loaded.dataset == "gsm8k" and loaded.errors == []
    assert [p.problem for p in loaded] == [r["question"] for r in raw]
    assert [p.answer for p in loaded] == [r["answer"].split("####")[-1].strip().replace(",", "") for r in raw]
    assert loaded.problems[0].answer == "18"
    assert [p.id for p in loaded] == [f"gsm8k-{i}" for i in range(5)]
    assert loaded.problems[0].metadata["solution"].endswith("$<<9*2=18>>18 every day at the farmer’s market.")
    assert all(p.dataset == "gsm8k" for p in loaded)


@needs_data
def test_whole_gsm8k_file_loads_with_integer_golds_and_commas_removed():
    loaded = load_problems(GSM8K)
    assert len(loaded) == 1319 and loaded.errors == []
    assert all(p.answer.lstrip("-").isdigit() for p in loaded)
    with_commas = [json.loads(line) for line in GSM8K.open() if "," in json.loads(line)["answer"].split("####")[-1]]
    assert with_commas, "GSM8K has golds written with thousands separators"
    by_id = {p.id: p for p in loaded}
    for record in with_commas:
        assert by_id[f"gsm8k-{record['idx']}"].answer == record["answer"].split("####")[-1].strip().replace(",", "")


@needs_data
def test_math500_first_lines_keep_answer_and_metadata():
    loaded = load_problems(MATH500, limit=4)
    raw = raw_lines(MATH500, 4)
    assert loaded.dataset == "math500" and loaded.errors == []
    assert [p.id for p in loaded] == [r["unique_id"] for r in raw]
    assert [p.answer for p in loaded] == [r["answer"] for r in raw]
    first = loaded.problems[0]
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.metadata["subject"] == "Precalculus" and first.metadata["level"] == 2
    assert "\\boxed" in first.metadata["solution"]
    assert len(load_problems(MATH500, dataset="math500")) == 500


def test_generic_jsonl_with_field_mapping_as_dict_or_cli_string(tmp_path):
    path = write_lines(
        tmp_path / "mine.jsonl",
        [{"uid": "a1", "q": "What is 2+2?", "a": 4}, {"uid": "a2", "q": "Half of 3?", "a": "\\frac32", "tag": "x"}],
    )
    for fields in ({"problem": "q", "answer": "a", "id": "uid"}, "problem=q, answer=a, id=uid"):
        loaded = load_problems(path, fields=fields)
        assert loaded.dataset == "generic" and loaded.errors == []
        assert load_problems(path, dataset="jsonl", fields=fields).problems == loaded.problems
        assert loaded.problems == [
            Problem("a1", "What is 2+2?", "4", "generic", {"uid": "a1"}),
            Problem("a2", "Half of 3?", "\\frac32", "generic", {"uid": "a2", "tag": "x"}),
        ]


def test_mapped_fields_keep_gsm8k_gold_parsing_when_answers_end_in_hashes(tmp_path):
    path = write_lines(tmp_path / "renamed.jsonl", [{"q": "How many?", "sol": "2 + 2 = 4\n#### 1,004"}])
    loaded = load_problems(path, fields="problem=q,answer=sol")
    assert loaded.dataset == "gsm8k"
    assert loaded.problems == [Problem("gsm8k-0", "How many?", "1004", "gsm8k", {"solution": "2 + 2 = 4"})]


def test_unknown_format_without_mapping_names_the_fields_it_saw(tmp_path):
    path = write_lines(tmp_path / "mine.jsonl", [{"q": "What is 2+2?", "a": 4}])
    with pytest.raises(DatasetError, match=r"cannot tell the format .*\['a', 'q'\].*fields="):
        load_problems(path)


def test_missing_answer_is_allowed_and_ids_default_to_row_index(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"q": "one"}, {"q": "two", "a": None}])
    loaded = load_problems(path, fields="problem=q,answer=a")
    assert [(p.id, p.answer) for p in loaded] == [("generic-0", None), ("generic-1", None)]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("problem", "not KEY=FIELD"),
        ("question=q", "unknown field mapping key 'question'"),
        ("problem=", "must name a field"),
    ],
)
def test_bad_field_mapping_is_rejected_by_name(spec, message):
    with pytest.raises(DatasetError, match=message):
        parse_field_mapping(spec)


@needs_data
def test_bad_lines_are_reported_with_the_field_and_skipped(tmp_path):
    good = raw_lines(GSM8K, 3)
    path = write_lines(
        tmp_path / "gsm8k_broken.jsonl",
        [
            good[0],                                              # 1
            '{"question": "unterminated',                         # 2
            {"answer": "x\n#### 3", "idx": 100},                  # 3
            {"question": "   ", "answer": "#### 3", "idx": 101},  # 4
            {"question": 42, "answer": "#### 3", "idx": 102},     # 5
            "",                                                   # 6 blank: ignored
            good[1],                                              # 7
            [1, 2],                                               # 8
            {"question": "Q?", "answer": "no final", "idx": 103},  # 9
            {"question": "Q?", "answer": {"v": 3}, "idx": 104},   # 10
            good[0],                                              # 11 same idx as line 1
            good[2],                                              # 12
        ],
    )
    loaded = load_problems(path)
    assert loaded.dataset == "gsm8k"
    assert [p.problem for p in loaded] == [good[0]["question"], good[1]["question"], good[2]["question"]]
    assert [str(e) for e in loaded.errors] == [
        "line 2: invalid JSON: Unterminated string starting at (column 14)",
        "line 3: missing field 'question'",
        "line 4: field 'question' is empty",
        "line 5: field 'question' must be a string, got int",
        "line 8: expected a JSON object, got list",
        "line 9: field 'answer' has no '#### <answer>' final answer",
        "line 10: field 'answer' must be a string, a number or a list of them, got dict",
        "line 11: duplicate id 'gsm8k-0' (first on line 1)",
    ]
    assert loaded.errors[1] == LineError(3, "missing field 'question'")


def test_mapped_field_names_appear_in_errors(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [{"q": "ok", "a": "1"}, {"a": "2"}, {"q": "ok", "a": {"v": 1}}])
    loaded = load_problems(path, fields="problem=q,answer=a")
    assert len(loaded) == 1
    assert [str(e) for e in loaded.errors] == [
        "line 2: missing field 'q'",
        "line 3: field 'a' must be a string, a number or a list of them, got dict",
    ]


def test_a_byte_order_mark_does_not_cost_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    lines = [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": "4"}]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(line) + "\n" for line in lines).encode())
    loaded = load_problems(path)
    assert loaded.errors == []
    assert [(p.problem, p.answer) for p in loaded] == [("1+1?", "2"), ("2+2?", "4")]


def test_a_list_of_answers_loads_as_every_acceptable_gold(tmp_path):
    # Shaped like OlympiadBench: final_answer is a list of LaTeX strings with trailing punctuation.
    path = write_lines(tmp_path / "olympiad.jsonl", [
        {"id": 1, "question": "For which x is f(x) defined?", "final_answer": ["$(-\\infty, 0) \\cup\\{1\\}$."]},
        {"id": 2, "question": "Name both roots.", "final_answer": ["$2$", "$-3$"]},
        {"id": 3, "question": "Empty?", "final_answer": []},
        {"id": 4, "question": "Nested?", "final_answer": [["1"]]},
        {"id": 5, "question": "Blank?", "final_answer": ["1", "  "]},
    ])
    loaded = load_problems(path, fields="problem=question,answer=final_answer")
    assert [(p.id, p.answer) for p in loaded] == [
        ("generic-1", ["$(-\\infty, 0) \\cup\\{1\\}$."]),
        ("generic-2", ["$2$", "$-3$"]),
    ]
    assert [str(e) for e in loaded.errors] == [
        "line 3: field 'final_answer' is an empty list",
        "line 4: field 'final_answer' item 0 must be a string or number, got list",
        "line 5: field 'final_answer' item 1 is empty",
    ]


def test_invalid_utf8_line_is_reported(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b'{"problem": "a", "answer": "1"}\n{"problem": "\xff"}\n')
    loaded = load_problems(path)
    assert len(loaded) == 1
    assert str(loaded.errors[0]).startswith("line 2: not valid UTF-8")


@needs_data
def test_limit_counts_loaded_problems_not_lines(tmp_path):
    good = raw_lines(GSM8K, 3)
    path = write_lines(tmp_path / "g.jsonl", [good[0], "{oops", *good[1:]])
    loaded = load_problems(path, limit=2)
    assert [p.id for p in loaded] == ["gsm8k-0", "gsm8k-1"] and len(loaded.errors) == 1
    assert len(load_problems(path, limit=0)) == 0
    with pytest.raises(DatasetError, match="limit must be >= 0"):
        load_problems(path, limit=-1)


def test_missing_file_is_one_clear_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope" / "problems.jsonl"
    with pytest.raises(DatasetNotFoundError, match=f"dataset file not found: {missing}$"):
        load_problems(missing)
    with pytest.raises(FileNotFoundError, match="pass dataset='lab'"):
        load_problems("test")
    with pytest.raises(DatasetError, match="is a directory"):
        load_problems(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset 'gsm9k'"):
        load_problems(missing, dataset="gsm9k")


def test_file_with_no_records_is_an_error(tmp_path):
    path = write_lines(tmp_path / "empty.jsonl", ["", "{bad"])
    with pytest.raises(DatasetError, match=r"no JSON records.*line 2: invalid JSON"):
        load_problems(path)


# --- the hub path ----------------------------------------------------------------------


def test_hub_name_without_datasets_package_says_to_pass_a_local_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # so "gsm8k" is not a file here
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real_find_spec(name, *a)
    )
    with pytest.raises(DatasetNotFoundError, match="'datasets' package, which is not installed; pass a local JSONL"):
        load_problems("gsm8k")
    with pytest.raises(DatasetNotFoundError, match="HuggingFaceH4/MATH-500"):
        load_problems("math500")


def fake_datasets_module(load_dataset) -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
    module.load_dataset = load_dataset
    return module


@needs_data
def test_hub_rows_are_parsed_like_file_lines(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    rows = [{"question": r["question"], "answer": r["answer"]} for r in raw_lines(GSM8K, 3)]  # hub rows have no idx
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets_module(lambda *a, **kw: calls.append((a, kw)) or rows))
    from_hub = load_problems("gsm8k", limit=3)
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]
    from_file = load_problems(GSM8K, limit=3)
    assert [(p.id, p.problem, p.answer) for p in from_hub] == [(p.id, p.problem, p.answer) for p in from_file]


def test_hub_failure_or_offline_setting_says_to_pass_a_local_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets_module(offline))
    with pytest.raises(DatasetNotFoundError, match="ConnectionError: no route to host; pass a local JSONL path"):
        load_problems("HuggingFaceH4/MATH-500", dataset="math500")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="set offline"):
        load_problems("gsm8k")


# --- the lab splits --------------------------------------------------------------------


def test_lab_split_converts_lab_problems():
    task = pytest.importorskip("arbitrage.lab.task")
    loaded = load_problems("test", dataset="lab", limit=5, seed=0)
    reference = task.make_splits(0, n_train=0)[2][:5]
    assert loaded.dataset == "lab" and loaded.errors == []
    assert [(p.id, p.problem, p.answer) for p in loaded] == [(r.id, r.problem, str(r.answer)) for r in reference]
    assert loaded.problems[0].metadata == {
        "difficulty": reference[0].difficulty, "steps": list(reference[0].steps), "split": "test", "seed": 0,
    }
    validation = load_problems("val", dataset="lab", limit=2, seed=0)
    assert [p.id for p in validation] == [r.id for r in task.make_splits(0, n_train=0)[1][:2]]
    with pytest.raises(DatasetError, match="lab split must be one of train, validation, test; got 'dev'"):
        load_problems("dev", dataset="lab")
