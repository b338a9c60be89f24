"""limits.max_prompt_tokens (arbitrage/servers/prompt_limit.py): a problem too long for
the models ends in its own error record, a huge one without ever being tokenized, and
the run's other problems are solved."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from arbitrage.config import Config, validate_config
from arbitrage.servers.prompt_limit import (
    CHARS_PER_TOKEN,
    DEFAULT_PROMPT_TOKENS,
    PromptLimit,
    PromptTooLongError,
    prompt_limit,
)

ROOT = Path(__file__).resolve().parents[1]


class CountingGenerator:
    """Counts one token per word and records what it was asked to count."""

    def __init__(self, context: int | None):
        self.context = context
        self.counted: list[int] = []

    def prompt_tokens(self, problem: str) -> int:
        self.counted.append(len(problem))
        return len(problem.split())

    def context_length(self) -> int | None:
        return self.context


class Wrapped:
    def __init__(self, inner):
        self.inner = inner


def test_a_huge_problem_is_refused_on_its_length_without_being_counted():
    generator = CountingGenerator(context=None)
    limit = PromptLimit(100, (generator.prompt_tokens,))
    with pytest.raises(PromptTooLongError, match=r"problem is 5,000,000 characters, over the 800 that "
                                                  r"limits.max_prompt_tokens 100 allows"):
        limit.check("x" * 5_000_000)
    assert generator.counted == []


def test_a_problem_over_the_token_limit_names_both_numbers():
    generator = CountingGenerator(context=None)
    limit = PromptLimit(100, (generator.prompt_tokens,))
    limit.check("word " * 100)
    with pytest.raises(PromptTooLongError, match=r"problem is 120 tokens, limit 100 \(limits.max_prompt_tokens\)"):
        limit.check("word " * 120)


def test_the_default_is_the_smallest_context_less_one_step():
    config = Config()
    draft, target = CountingGenerator(1024), CountingGenerator(4096)
    limit = prompt_limit(config, (Wrapped(draft), target))  # a batching wrapper counts as its model
    assert limit.max_tokens == 1024 - config.limits.max_step_tokens
    assert len(limit.counters) == 2


def test_the_config_value_wins_and_servers_without_a_context_get_the_fallback():
    config = validate_config({"limits": {"max_prompt_tokens": 50}})
    assert prompt_limit(config, (CountingGenerator(1024),)).max_tokens == 50
    assert prompt_limit(Config(), (object(), None)) == PromptLimit(DEFAULT_PROMPT_TOKENS, ())
    assert CHARS_PER_TOKEN * DEFAULT_PROMPT_TOKENS < 5_000_000  # so the fallback still refuses a 5 MB problem


def run_cli(args: list[str], workdir: Path, *, memory_cap_bytes: int) -> tuple[int, str, int]:
    """Run `python -m arbitrage.cli ARGS`; return exit status, output and the child's peak RSS
    in bytes. The cap on its address space stops a regression from eating the machine."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_cap_bytes, memory_cap_bytes))

    log = workdir / "cli.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "arbitrage.cli", *args], stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}, preexec_fn=cap_memory,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, log.read_text(), usage.ru_maxrss * 1024


def test_a_5_mb_problem_in_a_jsonl_file_is_one_error_record_and_the_others_are_solved(tmp_path):
    data = tmp_path / "problems.jsonl"
    huge = "Compute 1+1. " + "filler " * (5_000_000 // 7)
    data.write_text(
        json.dumps({"id": "small-1", "problem": "1 + 2 =", "answer": "3"}) + "\n"
        + json.dumps({"id": "huge", "problem": huge, "answer": "2"}) + "\n"
        + json.dumps({"id": "long", "problem": "9 + " * 600 + "1 =", "answer": "5401"}) + "\n"
        + json.dumps({"id": "small-2", "problem": "4 + 4 =", "answer": "8"}) + "\n"
    )
    assert data.stat().st_size > 5_000_000
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "policy": "draft_only",
        "limits": {"max_steps": 2, "max_step_tokens": 16, "max_total_tokens": 32},
        "models": {"draft": {"path": "lab:draft"}, "target": None, "prm": None, "router": None},
    }))
    output = tmp_path / "run"
    started = time.monotonic()
    status, text, peak_rss = run_cli(
        ["run", "--config", str(config), "--data", str(data), "--output", str(output), "--no-progress"],
        tmp_path, memory_cap_bytes=8 << 30,
    )
    elapsed = time.monotonic() - started
    assert status == 3, text  # problems ended in an error: exit 3, with the error shown
    assert "Traceback" not in text
    records = {r["id"]: r for r in map(json.loads, (output / "results.jsonl").read_text().splitlines())}
    assert set(records) == {"small-1", "huge", "long", "small-2"}
    assert records["huge"]["error"].startswith("PromptTooLongError: problem is 5,")
    assert "refused without tokenizing it" in records["huge"]["error"]
    # The lab draft's context is 1024 tokens: the default limit is 1024 - 16.
    assert "PromptTooLongError: problem is" in records["long"]["error"] and "tokens, limit 1008" in records["long"]["error"]
    assert records["small-1"]["error"] is None and records["small-2"]["error"] is None
    assert records["small-1"]["steps"] and records["small-2"]["steps"]
    assert "2 of 4 problems ended in an error" in " ".join(text.split())
    assert peak_rss < 2 << 30, f"peak RSS {peak_rss / 2**30:.2f} GiB"
    assert elapsed < 60
