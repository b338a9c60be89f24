"""Durable batch runs (`checkpoint:`): a run stopped mid-problem resumes each unfinished
problem at its last committed step, finished problems leave the file, and runs of other
settings sharing the file never resume each other's problems."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from arbitrage.config import Config, ConfigError, load_config
from arbitrage.eval.durable import CheckpointFileError, CheckpointStore
from arbitrage.eval.run import read_results, run_batch
from arbitrage.servers.factory import ModelSet
from fakes import ScriptedGenerator, ScriptedRouter


@dataclass
class P:
    id: str
    problem: str
    answer: str | None


DRAFT_STEPS = ["d0", "d1", "d2", "d3", "d4 \\boxed{3}"]


class StoppingGenerator(ScriptedGenerator):
    """Raises KeyboardInterrupt (as Ctrl-C does) when asked for step `stop_at` of `stop_problem`."""

    def __init__(self, *args, stop_problem=None, stop_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop = (stop_problem, stop_at)
        self.problems: list[str] = []

    def step(self, problem, steps, **kwargs):
        if (problem, len(steps)) == self.stop:
            raise KeyboardInterrupt
        self.problems.append(problem)
        return super().step(problem, steps, **kwargs)


def scripted(**stop) -> ModelSet:
    return ModelSet(
        draft=StoppingGenerator("d", DRAFT_STEPS, **stop),
        target=ScriptedGenerator("t", ["t0", "t1", "t2", "t3", "t4 \\boxed{3}"]),
        router=ScriptedRouter({"d1": 0.9, "d3": 0.9}),
    )


def config(tmp_path, threshold: float = 0.5) -> Config:
    return Config(policy="arbitrage", threshold=threshold, checkpoint=str(tmp_path / "steps.sqlite"))


PROBLEMS = [P(f"p{i}", f"problem {i}", "3") for i in range(3)]


def test_a_run_stopped_mid_problem_resumes_at_its_last_committed_step(tmp_path):
    stopped = scripted(stop_problem="problem 2", stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_batch(config(tmp_path), PROBLEMS, tmp_path / "run", models=stopped, progress=False)
    assert [r["id"] for r in read_results(tmp_path / "run" / "results.jsonl")] == ["p0", "p1"]

    again = scripted()
    run_batch(config(tmp_path), PROBLEMS, tmp_path / "run", models=again, progress=False)
    records = {r["id"]: r for r in read_results(tmp_path / "run" / "results.jsonl")}
    # p0 and p1 are not solved again, and p2's three committed steps are not written again.
    assert [(problem, len(steps)) for problem, steps in zip(again.draft.problems, again.draft.calls)] == [
        ("problem 2", 3), ("problem 2", 4)
    ]
    assert again.target.calls == [["d0", "t1", "d2"]]  # the router escalates step 3 (d3) on resume too
    assert records["p2"]["resumed_at_step"] == 3 and "resumed_at_step" not in records["p0"]
    uninterrupted = run_batch(Config(policy="arbitrage", threshold=0.5), PROBLEMS, tmp_path / "ref",
                              models=scripted(), progress=False)
    reference = {r["id"]: r for r in read_results(tmp_path / "ref" / "results.jsonl")}
    for key in ("steps", "final_answer", "correct", "counters"):
        assert [records[p.id][key] for p in PROBLEMS] == [reference[p.id][key] for p in PROBLEMS]
    assert uninterrupted["n_problems"] == 3
    with CheckpointStore(tmp_path / "steps.sqlite", {}) as store:
        assert store.thread_count() == 0  # every finished problem's states were deleted


def test_the_checkpoint_file_does_not_grow_with_the_number_of_problems(tmp_path, monkeypatch):
    forget = CheckpointStore.forget
    in_file_after_each_record = []

    def forget_and_count(store, problem_id):
        forget(store, problem_id)
        in_file_after_each_record.append(store.thread_count())

    monkeypatch.setattr(CheckpointStore, "forget", forget_and_count)
    sizes = {}
    for count in (3, 12):
        directory = tmp_path / str(count)
        problems = [P(f"p{i}", f"problem {i}", "3") for i in range(count)]
        in_file_after_each_record.clear()
        run_batch(config(directory), problems, directory / "run", models=scripted(), progress=False)
        # One problem in flight at a time: once its record is written, the file holds no state.
        assert in_file_after_each_record == [0] * count
        sizes[count] = sum(path.stat().st_size for path in directory.glob("steps.sqlite*"))
    assert sizes[12] == sizes[3], sizes  # deleted states give their pages back


def test_runs_of_other_settings_sharing_the_file_do_not_resume_each_other(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_batch(config(tmp_path), PROBLEMS[:1], tmp_path / "a", models=scripted(stop_problem="problem 0", stop_at=2),
                  progress=False)
    other = scripted()
    run_batch(config(tmp_path, threshold=0.95), PROBLEMS[:1], tmp_path / "b", models=other, progress=False)
    assert [len(steps) for steps in other.draft.calls] == [0, 1, 2, 3, 4]  # started at the first step
    with CheckpointStore(tmp_path / "steps.sqlite", {}) as store:
        assert store.thread_count() == 1  # the threshold-0.5 run's problem still waits for its rerun


def test_a_changed_problem_text_under_the_same_id_starts_afresh(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_batch(config(tmp_path), PROBLEMS[:1], tmp_path / "run", models=scripted(stop_problem="problem 0", stop_at=2),
                  progress=False)
    again = scripted()
    run_batch(config(tmp_path), [P("p0", "another problem", "3")], tmp_path / "run", models=again, progress=False)
    assert [len(steps) for steps in again.draft.calls] == [0, 1, 2, 3, 4]
    (record,) = read_results(tmp_path / "run" / "results.jsonl")
    assert record["problem"] == "another problem" and "resumed_at_step" not in record


def test_the_config_names_the_checkpoint_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"checkpoint: {tmp_path / 'steps.sqlite'}\n")
    assert load_config(path).checkpoint == str(tmp_path / "steps.sqlite")
    path.write_text("checkpoint: ''\n")
    with pytest.raises(ConfigError, match="checkpoint: String should have at least 1 character"):
        load_config(path)


def test_a_directory_as_checkpoint_file_is_refused_by_name(tmp_path):
    with pytest.raises(CheckpointFileError, match=f"checkpoint {tmp_path} is a directory"):
        CheckpointStore(tmp_path, {})
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database, but long enough to have a header " * 4)
    with pytest.raises(CheckpointFileError, match="is not a SQLite checkpoint file"):
        CheckpointStore(not_sqlite, {})


def saved_progress(database) -> dict[str, tuple[int, bool]]:
    """{problem id: (committed steps, finished)} of the newest saved state of each thread,
    read without writing to the file the run is using."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        rows = connection.execute("SELECT thread_id, checkpoint_id, type, checkpoint FROM checkpoints").fetchall()
    except sqlite3.OperationalError:  # the run has not created its tables yet
        return {}
    finally:
        connection.close()
    newest = {}
    for thread_id, checkpoint_id, kind, blob in rows:
        if thread_id not in newest or checkpoint_id > newest[thread_id][0]:
            newest[thread_id] = (checkpoint_id, serde.loads_typed((kind, blob))["channel_values"])
    return {
        thread_id.split(":", 1)[1]: (len(values.get("steps", [])), bool(values.get("finished")))
        for thread_id, (_, values) in newest.items()
    }


def close_floats(step: dict, approx: bool = False) -> dict:
    return {key: pytest.approx(value, rel=1e-4) if approx and isinstance(value, float) else value
            for key, value in step.items()}


def read_calls(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_a_killed_run_resumes_without_generating_a_committed_step_again(tmp_path):
    """SIGKILL `arbitrage run --checkpoint` on the lab models once a problem has committed
    steps, rerun it, and count the step calls of the rerun."""
    common = ["run", "--limit", "4", "--no-progress", "--threads", "1"]
    durable = [*common, "--output", str(tmp_path / "run"), "--checkpoint", str(tmp_path / "steps.sqlite")]
    launcher = [sys.executable, str(Path(__file__).parent / "call_logging_run.py")]
    env = {**os.environ, "ARBITRAGE_CALL_LOG": str(tmp_path / "calls-1.jsonl")}
    killed = subprocess.Popen([*launcher, *durable], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while True:
            recorded = read_results(tmp_path / "run" / "results.jsonl")
            progress = saved_progress(tmp_path / "steps.sqlite") if (tmp_path / "steps.sqlite").exists() else {}
            # A finished problem on record, and another one two or more committed steps in.
            if recorded and any(steps >= 2 and not finished for steps, finished in progress.values()):
                break
            assert killed.poll() is None, f"the run ended before it could be killed: {killed.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no problem reached two committed steps in time"
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait(30)
    finished_before = {r["id"] for r in read_results(tmp_path / "run" / "results.jsonl")}
    committed = {pid: steps for pid, (steps, finished) in saved_progress(tmp_path / "steps.sqlite").items()
                 if not finished and pid not in finished_before}
    assert finished_before and max(committed.values()) >= 2, (finished_before, committed)

    env["ARBITRAGE_CALL_LOG"] = str(tmp_path / "calls-2.jsonl")
    rerun = subprocess.run([*launcher, *durable], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    calls = read_calls(tmp_path / "calls-2.jsonl")
    assert not [c for c in calls if c["session"] in finished_before]  # finished problems are skipped
    for problem_id, steps in committed.items():
        indices = [c["step_index"] for c in calls if c["session"] == problem_id]
        assert indices and min(indices) == steps, (problem_id, steps, indices)  # no committed step again
    records = {r["id"]: r for r in read_results(tmp_path / "run" / "results.jsonl")}
    assert {pid: records[pid].get("resumed_at_step") for pid in committed} == committed

    reference = subprocess.run([sys.executable, "-m", "arbitrage.cli", *common, "--output", str(tmp_path / "ref")],
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    expected = {r["id"]: r for r in read_results(tmp_path / "ref" / "results.jsonl")}
    assert sorted(records) == sorted(expected) and len(records) == 4
    for key in ("final_answer", "correct", "counters", "finish_reason"):
        assert {pid: r[key] for pid, r in records.items()} == {pid: r[key] for pid, r in expected.items()}, key
    for pid, record in records.items():
        # A resumed problem's draft reads its prefix afresh, not from a KV cache grown step by
        # step, so its log-probabilities (and the router score over them) agree to float error.
        assert [close_floats(step) for step in record["steps"]] == [
            close_floats(step, approx=True) for step in expected[pid]["steps"]
        ], pid
    assert saved_progress(tmp_path / "steps.sqlite") == {}  # nothing left once every record is written
