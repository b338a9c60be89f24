"""`arbitrage` with every draft and target step call appended, as one JSON line, to the file
named by $ARBITRAGE_CALL_LOG (fsynced, so a SIGKILL loses none): what a test counts to
show which steps a run generated.

    ARBITRAGE_CALL_LOG=calls.jsonl python tests/call_logging_run.py run --limit 4 --checkpoint steps.sqlite
"""

from __future__ import annotations

import json
import os
import sys
import threading

from arbitrage.servers import factory


class LoggedGenerator:
    def __init__(self, role: str, inner, log_path: str):
        self.role = role
        self.inner = inner
        self.log_path = log_path
        self.lock = threading.Lock()

    def step(self, problem, steps, *, max_tokens, sampling=None, session=None):
        output = self.inner.step(problem, steps, max_tokens=max_tokens, sampling=sampling, session=session)
        line = json.dumps({"role": self.role, "session": session, "step_index": len(steps), "text": output.text})
        with self.lock, open(self.log_path, "a") as log:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())
        return output

    def end_session(self, session: str) -> None:
        self.inner.end_session(session)


def main() -> None:
    log_path = os.environ["ARBITRAGE_CALL_LOG"]
    load_models = factory.load_models

    def logged_load_models(config, roles=None):
        models = load_models(config, roles)
        for role in ("draft", "target"):
            if getattr(models, role) is not None:
                setattr(models, role, LoggedGenerator(role, getattr(models, role), log_path))
        return models

    factory.load_models = logged_load_models  # the CLI imports it from the factory when it runs
    from arbitrage.cli import app

    sys.argv[0] = "arbitrage"
    app()


if __name__ == "__main__":
    main()
