"""`arbitrage serve` as a child process on 127.0.0.1, for tests that kill and restart it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ServeProcess:
    """`python -m arbitrage.servers.cli serve` for one role; stopped by its own pid."""

    def __init__(self, config: Path, role: str, port: int = 0, *, threads: int = 1):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.role = role
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arbitrage.servers.cli", "serve", "--config", str(config), "--role", role,
             "--port", str(port), "--threads", str(threads)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def url(self) -> str:
        line = self.process.stdout.readline()
        if not line.startswith(f"serving {self.role} "):
            raise RuntimeError(f"{self.role} server did not start: {line}{self.process.stderr.read()}")
        return line.rsplit(" on ", 1)[1].strip()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
