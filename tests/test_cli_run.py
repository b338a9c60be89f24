"""`arbitrage run` end to end through the CLI on tiny real transformers models, and its
answers to bad input: each names the problem, the line or the file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from arbitrage.cli import app
from tiny_models import save_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    model = save_tiny(root / "lm", "causal")
    config = root / "config.yaml"
    config.write_text(
        "policy: draft_only\n"
        "limits: {max_steps: 2, max_step_tokens: 4, max_total_tokens: 8}\n"
        f"models:\n  draft: {{path: {model}}}\n  target: {{path: {model}}}\n  prm: null\n  router: null\n"
    )
    return config


def test_batch_run_skips_bad_lines_and_finishes_the_others(tiny_config, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n"
        + "{not json\n"
        + json.dumps({"answer": "#### 3"}) + "\n"
        + json.dumps({"question": "", "answer": "#### 4"}) + "\n"
        + json.dumps({"question": "2+2?", "answer": "#### 4"}) + "\n"
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--config", str(tiny_config), "--data", str(data), "--output", str(out),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output and "line 3: missing field 'question'" in result.output
    assert "line 4" in result.output and "question" in result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["problem"] for r in records] == ["1+1?", "2+2?"]
    assert all(r["error"] is None and 1 <= len(r["steps"]) <= 2 for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == 2 and summary["draft_steps"] == sum(len(r["steps"]) for r in records)


def test_single_problem_run_and_rerun_skips_it(tiny_config, tmp_path):
    args = ["run", "--config", str(tiny_config), "--problem", "3+4?", "--output", str(tmp_path), "--no-progress"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["correct"] is None  # no gold answer: accuracy not measurable
    assert json.loads((tmp_path / "summary.json").read_text())["accuracy"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--problem", "  "], "--problem is empty"),
        (["--policy", "fastest", "--problem", "x"], "policy"),
        (["--policy", "rsd", "--threshold", "2", "--problem", "x"], "threshold 2.0 is outside [0.0, 1.0]"),
        (["--data", "/nonexistent/data.jsonl"], "dataset file not found: /nonexistent/data.jsonl"),
        (["--problem", "x", "--checkpoint", "/"], "checkpoint / is a directory; name a file"),
    ],
)
def test_bad_input_gets_one_clear_error(tiny_config, tmp_path, args, message):
    result = runner.invoke(app, ["run", "--config", str(tiny_config), "--output", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_missing_model_path_names_the_role_and_the_path(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("policy: draft_only\nmodels:\n  draft: {path: /models/missing}\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--problem", "1+1?", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "models.draft" in output and "/models/missing" in output


def test_malformed_yaml_is_reported(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("policy: [\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--problem", "x"])
    assert result.exit_code == 2 and "malformed YAML" in result.output
