"""Durable batch runs: every unfinished problem's graph state in one SQLite file, so a
run killed mid-problem resumes each problem at its last committed step.

    arbitrage run --limit 100 --output runs/lab --checkpoint runs/lab/steps.sqlite

The file is LangGraph's SQLite checkpointer (langgraph-checkpoint-sqlite). A problem's
thread id is the run's identity (policy, threshold, model entries, weight fingerprints:
what `arbitrage run` already refuses to mix in one output directory) followed by the
problem id, so runs of other settings sharing the file never resume each other's
problems. A problem's thread is deleted as soon as its record is in results.jsonl, so the
file holds only the problems in flight (SQLite reuses the freed pages): it does not grow
with the number of problems. A problem that ended in an error keeps its thread, and the
rerun that retries it resumes where it failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from arbitrage.errors import InputError


class CheckpointFileError(InputError):
    """The checkpoint path cannot hold a SQLite checkpoint database."""


class CheckpointStore:
    """Opens (or creates) the checkpoint file; `saver` goes to the Solver, thread ids to `solve`."""

    def __init__(self, path: str | os.PathLike, run_identity: dict):
        self.path = Path(path)
        if self.path.is_dir():
            raise CheckpointFileError(f"checkpoint {self.path} is a directory; name a file, e.g. {self.path / 'steps.sqlite'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the run's worker threads; SqliteSaver serialises them with its lock.
        self._connection = sqlite3.connect(str(self.path), check_same_thread=False)
        self.saver = SqliteSaver(self._connection)
        try:
            # Before the tables exist: a new file then gives deleted threads' pages back to the
            # file system at each commit, so its size follows the problems in flight.
            self._connection.execute("PRAGMA auto_vacuum=FULL")
            self.saver.setup()  # switches the file to WAL
            # A committed step survives the process being killed; only a power loss can take
            # back the last few, which the rerun then generates again. Full fsyncs cost ~10 ms a step.
            self._connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as error:
            self._connection.close()
            raise CheckpointFileError(f"checkpoint {self.path} is not a SQLite checkpoint file: {error}") from None
        canonical = json.dumps(run_identity, sort_keys=True, separators=(",", ":"))
        self.run_key = hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def thread_id(self, problem_id: str) -> str:
        return f"{self.run_key}:{problem_id}"

    def forget(self, problem_id: str) -> None:
        """Delete a finished problem's saved states."""
        self.saver.delete_thread(self.thread_id(problem_id))

    def thread_count(self) -> int:
        """Problems with saved states in this file (every run's)."""
        with self.saver.cursor(transaction=False) as cursor:
            cursor.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints")
            return int(cursor.fetchone()[0])

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "CheckpointStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
