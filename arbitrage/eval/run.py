"""Batch runs: solve problems, append each result to DIR/results.jsonl the moment it
finishes, resume from whatever is already there, and write DIR/summary.json.

A crash or Ctrl-C loses nothing that finished; rerunning skips finished problems
and retries the ones that ended in an error (their old line is dropped so no
problem appears twice).

With `audit_escalations`, arbitrage and rsd runs solve unaudited and then PRM-score
their escalations from the results (`arbitrage/eval/audit.py`), so the audit's PRM
forwards never slow the run being timed; an audit cut short is redone by the rerun.

With a checkpoint file (`checkpoint:` in the config, `arbitrage run --checkpoint`), the
problems in flight also keep their graph state after every step (arbitrage/eval/durable.py),
so the rerun resumes each unfinished problem at its last committed step.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Iterable, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from arbitrage.config import Config
from arbitrage.eval.audit import audit_records, audited_after_run, needs_audit, pending_items
from arbitrage.eval.checkpoint_fingerprint import changed_roles, run_checkpoints
from arbitrage.eval.durable import CheckpointStore
from arbitrage.eval.grading import grade
from arbitrage.eval.metrics import summarize
from arbitrage.eval.run_directory import RunDirectoryError, check_output_dir
from arbitrage.servers.factory import ModelSet, load_models
from arbitrage.servers.inprocess_batching import close_batching, wrap_batching
from arbitrage.solver import Solver

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
CHECKPOINTS_FILE = "checkpoints.json"


class ProblemLike(Protocol):
    id: str
    problem: str
    answer: str | list[str] | None


def read_results(path: str | os.PathLike) -> list[dict]:
    """Records in a results file; a torn last line (crash mid-write) is ignored."""
    path = Path(path)
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_identity(config: Config) -> dict:
    """What must match for two invocations to share one results file."""
    return {"policy": config.policy.name, "threshold": config.threshold, "models": config.models.model_dump()}


def _check_same_run(output_dir: Path, config: Config, checkpoints: dict) -> None:
    saved = output_dir / CONFIG_FILE
    if not saved.exists():
        return
    previous = json.loads(saved.read_text())
    previous_identity = _run_identity(Config.model_validate(previous))
    if previous_identity != _run_identity(config):
        raise RunDirectoryError(
            f"{output_dir} holds a run with policy={previous_identity['policy']} "
            f"threshold={previous_identity['threshold']} and different settings; use another --output"
        )
    saved_checkpoints = output_dir / CHECKPOINTS_FILE
    if saved_checkpoints.exists():  # runs from before fingerprints have none to compare
        changed = changed_roles(json.loads(saved_checkpoints.read_text()), checkpoints)
        if changed:
            paths = ", ".join(f"models.{role}.path={config.models.get(role).path!r}" for role in changed)
            raise RunDirectoryError(
                f"{output_dir} holds results from other weights at the same path ({paths}): the files "
                "changed since that run; use another --output"
            )


class ResultsWriter:
    """Appends one JSON line per finished problem, flushed to disk at once."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._file = path.open("a")

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _resume(results_path: Path, wanted_ids: set[str]) -> dict[str, dict]:
    """Keep finished records; drop errored ones that this run will retry."""
    kept: dict[str, dict] = {}
    for record in read_results(results_path):
        if record.get("error") and record["id"] in wanted_ids:
            kept.pop(record["id"], None)
        else:
            kept[record["id"]] = record
    _atomic_write(results_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept.values()))
    return kept


def run_batch(
    config: Config,
    problems: Iterable[ProblemLike],
    output_dir: str | os.PathLike,
    *,
    models: ModelSet | None = None,
    concurrency: int = 1,
    progress: bool = True,
    solver: Solver | None = None,
) -> dict:
    """Solve every problem not already finished in `output_dir`; return the summary."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if solver is not None and config.checkpoint is not None:
        raise ValueError("checkpoint: needs the run to build its own Solver; pass models, not a solver")
    problems = list(problems)
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"problem id {duplicate!r} appears more than once")
    output_dir = check_output_dir(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirectoryError(f"output directory '{output_dir}' cannot be made: {error.strerror}") from None
    checkpoints = run_checkpoints(config)
    _check_same_run(output_dir, config, checkpoints)
    _atomic_write(output_dir / CONFIG_FILE, json.dumps(config.model_dump(), indent=2))
    _atomic_write(output_dir / CHECKPOINTS_FILE, json.dumps(checkpoints, indent=2))
    results_path = output_dir / RESULTS_FILE
    done = _resume(results_path, set(ids))
    todo = [p for p in problems if p.id not in done]
    batched = None
    audit_prm = None
    store = None
    if solver is None:
        models = models if models is not None else load_models(config)
        if config.audit_escalations and audited_after_run(config.policy):
            # Solve unaudited, then audit from the results (arbitrage/eval/audit.py).
            audit_prm = models.prm
            if audit_prm is None:
                raise ValueError("audit_escalations needs a loaded prm model to score the escalated steps")
            config = config.model_copy(update={"audit_escalations": False})
        if config.checkpoint is not None:
            identity = {**_run_identity(config), "audit_escalations": config.audit_escalations, "weights": checkpoints}
            store = CheckpointStore(config.checkpoint, identity)
            for problem_id in done:  # finished before an earlier run could delete their states
                store.forget(problem_id)
        if concurrency > 1:
            # Problems in flight share one forward per decode step (models that can batch).
            models = batched = wrap_batching(models, max_batch=concurrency)
        solver = Solver(config, models, grader=grade, checkpointer=store.saver if store is not None else None)

    previous_wall = _previous_wall(output_dir / SUMMARY_FILE) if done else 0.0
    start = time.perf_counter()
    writer = ResultsWriter(results_path)
    try:
        with _progress_bar(progress) as bar:
            task = bar.add_task(config.policy.name, total=len(problems), completed=len(problems) - len(todo))
            with ThreadPoolExecutor(max_workers=concurrency) as pool:

                def solve_and_record(p: ProblemLike) -> dict:
                    thread_id = store.thread_id(p.id) if store is not None else None
                    record = solver.solve(p.id, p.problem, p.answer, getattr(p, "dataset", None), thread_id=thread_id)
                    writer.write(record)
                    done[p.id] = record  # also when the run is being interrupted: the summary counts it
                    if store is not None and not record.get("error"):
                        store.forget(p.id)  # its record is on disk; the file keeps only problems in flight
                    return record

                futures = [pool.submit(solve_and_record, p) for p in todo]
                try:
                    for future in as_completed(futures):
                        future.result()
                        bar.advance(task)
                except KeyboardInterrupt:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        writer.close()
        if store is not None:
            store.close()
        if batched is not None:
            close_batching(batched)
        wall = previous_wall + time.perf_counter() - start
        ordered = [done[i] for i in ids if i in done] + [r for i, r in done.items() if i not in set(ids)]
        summary = summarize(ordered, wall_s=wall)
        _atomic_write(output_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    if audit_prm is not None:  # every problem is solved and summarised; a failed audit loses none
        ordered = _audit_after_run(ordered, audit_prm, results_path, progress)
        summary = summarize(ordered, wall_s=wall)
        _atomic_write(output_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def _audit_after_run(records: list[dict], prm, results_path: Path, progress: bool) -> list[dict]:
    """Audit the escalations of every record and rewrite the results file with the scores."""
    if not any(needs_audit(r) for r in records):
        return records
    total = sum(len(pending_items(r)) for r in records)
    with _progress_bar(progress) as bar:
        task = bar.add_task("audit (PRM)", total=total)
        audited = audit_records(records, prm, advance=lambda n: bar.advance(task, n))
    _atomic_write(results_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in audited))
    return audited


def _previous_wall(summary_path: Path) -> float:
    if not summary_path.exists():
        return 0.0
    try:
        return float(json.loads(summary_path.read_text()).get("wall_s") or 0.0)
    except (ValueError, json.JSONDecodeError):
        return 0.0


class _NullBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def advance(self, task, amount=1):
        pass


def _progress_bar(enabled: bool):
    if not enabled:
        return _NullBar()
    # On stderr, so the JSON that commands and benchmarks print on stdout stays parseable.
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True),
    )
