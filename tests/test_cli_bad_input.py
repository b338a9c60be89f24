"""Bad input to the `arbitrage` command, run as a user runs it (a subprocess): one
`error:` line that names the field and echoes the value, exit status 2, no traceback,
and nothing loaded first. A run whose problems fail exits 3 and says which errors and
how to retry; an unexpected exception keeps its traceback (exit 1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def arbitrage(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "arbitrage.cli", *args], capture_output=True, text=True, env=env,
        cwd=cwd, timeout=timeout,
    )


def assert_input_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, text
    assert "Traceback" not in text and "error:" in text, text
    for piece in expected:
        assert piece in text, f"{piece!r} not in {text!r}"
    return text


def write_config(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_an_output_path_that_is_a_file_is_refused_before_any_model_loads(tmp_path):
    afile = tmp_path / "hostname"
    afile.write_text("not a directory\n")
    result = arbitrage("run", "--problem", "x", "--output", str(afile))
    text = assert_input_error(result, "output directory", str(afile), "is a file")
    assert "Loading weights" not in text  # refused before the models load


def test_an_output_path_below_a_file_is_refused(tmp_path):
    afile = tmp_path / "hostname"
    afile.write_text("x\n")
    result = arbitrage("run", "--problem", "x", "--output", str(afile / "run"))
    assert_input_error(result, f"output directory '{afile / 'run'}'", f"'{afile}', which is a file")


def test_a_sweep_output_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "sweep"
    afile.write_text("x\n")
    assert_input_error(arbitrage("sweep", "--output", str(afile), "--limit", "1"), "output directory", str(afile))


def test_an_empty_config_file_is_refused(tmp_path):
    config = write_config(tmp_path / "empty.yaml", "# only a comment\n")
    assert_input_error(arbitrage("run", "--config", str(config), "--problem", "x"), str(config), "is empty")


@pytest.mark.parametrize(
    "model, field, value",
    [
        ({"path": "lab:router", "router_kind": "nope"}, "models.router.router_kind", "unknown router_kind 'nope'; choose one of classifier, features"),
        ({"path": "lab:prm", "prm_style": "deepseek"}, "models.router.prm_style", "unknown prm_style 'deepseek'; choose one of skywork, qwen, judge"),
        ({"path": "lab:router", "backend": "grpc"}, "models.router.backend", "unknown backend 'grpc'; choose one of transformers, openai"),
        ({"path": "lab:router", "dtype": "int3"}, "models.router.dtype", "unknown dtype 'int3'; choose one of auto, float32, bfloat16, float16"),
        ({"path": "m", "backend": "openai", "base_url": "http://127.0.0.1:1", "api": "tgi"}, "models.router.api", "unknown api 'tgi'; choose one of sglang, vllm, arbitrage"),
        ({"path": "lab:router", "prompt": {"format": "chatml"}}, "models.router.prompt.format", "unknown format 'chatml'; choose one of raw, chat"),
        ({"path": "lab:router", "max_retries": -2}, "models.router.max_retries", "greater than or equal to 0, got -2"),
    ],
)
def test_a_bad_choice_in_the_config_names_the_field_and_the_value(tmp_path, model, field, value):
    config = write_config(tmp_path / "c.yaml", {"models": {"router": model}})
    assert_input_error(arbitrage("run", "--config", str(config), "--problem", "x"), field, value)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--policy", "nope", "--problem", "x"], ["unknown policy 'nope'; choose one of arbitrage"]),
        (["run", "--dataset", "nope", "--data", "x.jsonl"], ["unknown dataset 'nope'"]),
        (["run", "--data", "missing.jsonl"], ["dataset file not found: missing.jsonl"]),
        (["run", "--dataset", "gsm8k", "--output", "o"], ["--dataset gsm8k", "without --data the lab test split runs"]),
        (["sweep", "--dataset", "math500", "--output", "o"], ["--dataset math500", "give --data"]),
        (["run", "--fields", "question", "--data", "x.jsonl"], ["field mapping item 'question'"]),
        (["graph", "--format", "gif"], ["unknown format 'gif'"]),
        (["sweep", "--policies", "nope", "--output", "o"], ["nope"]),
        (["router", "train", "--kind", "forest", "--data", ".", "--output", "o"], ["--kind", "'forest'"]),
    ],
)
def test_a_bad_command_line_value_is_named(tmp_path, args, expected):
    (tmp_path / "x.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    if args[:2] == ["router", "train"]:
        write_rows(tmp_path, [0, 1])
    assert_input_error(arbitrage(*args, cwd=tmp_path), *expected)


def write_rows(directory: Path, train_labels: list[int]) -> None:
    def row(label: int, i: int) -> dict:
        return {"problem": f"p{i}", "previous_steps": [], "draft_step": "d", "label": label, "delta": label - 0.5,
                "draft_logprob_mean": -0.1 * i, "draft_logprob_min": -0.2 * i, "draft_tokens": 3 + i, "step_index": 0}
    for split, labels in (("train", train_labels), ("validation", [0, 1]), ("test", [0, 1])):
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(row(l, i)) + "\n" for i, l in enumerate(labels)))


@pytest.mark.parametrize("kind", ["features", "classifier"])
def test_router_training_data_with_one_label_is_refused(tmp_path, kind):
    write_rows(tmp_path, [1, 1, 1, 1])
    result = arbitrage("router", "train", "--kind", kind, "--data", str(tmp_path), "--output", str(tmp_path / "r"))
    assert_input_error(result, f"the train split of {tmp_path}", "4 rows with label 1", "0 with label 0", "both labels")


def test_an_input_error_raised_anywhere_is_one_line_and_anything_else_keeps_its_traceback():
    script = (
        "import sys, arbitrage.cli as cli\n"
        "from arbitrage.eval.datasets import DatasetError\n"
        "error = DatasetError('field answer is bad') if sys.argv[1] == 'input' else RuntimeError('a bug')\n"
        "def app():\n    raise error\n"
        "cli.app = app\ncli.main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad_input = subprocess.run([sys.executable, "-c", script, "input"], capture_output=True, text=True, env=env)
    assert bad_input.returncode == 2 and "Traceback" not in bad_input.stderr
    assert "error: field answer is bad" in bad_input.stderr
    bug = subprocess.run([sys.executable, "-c", script, "bug"], capture_output=True, text=True, env=env)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "RuntimeError: a bug" in bug.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens here


@pytest.mark.server
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_problems_that_fail_exit_3_with_the_errors_and_the_rerun_command(tmp_path, command):
    port = _closed_port()
    config = write_config(tmp_path / "dead.yaml", {
        "policy": "target_only",
        "servers": {"wait_s": 0},
        "models": {"target": {"backend": "openai", "api": "arbitrage", "path": "lab:target",
                              "base_url": f"http://127.0.0.1:{port}"}},
    })
    output = tmp_path / "out"
    args = [command, "--config", str(config), "--data", "test", "--dataset", "lab", "--limit", "3", "--output", str(output), "--no-progress"]
    if command == "sweep":
        args += ["--policies", "target_only"]
    result = arbitrage(*args)
    text = " ".join(result.stderr.split())
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in text
    assert "error: 3 of 3 problems ended in an error" in text
    assert f"3 x ServerUnreachable: the server at http://127.0.0.1:{port} was unreachable for 0 s" in text
    assert f"rerun to retry them (finished problems are kept): arbitrage {command} --config {config}" in text
