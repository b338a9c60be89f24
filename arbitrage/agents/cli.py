"""`arbitrage serve`: one model of the config over HTTP, or with `--role pipeline` the whole
speculative pipeline as an OpenAI-compatible endpoint (arbitrage/agents/pipeline_server.py).

    arbitrage serve --role pipeline --config examples/lab.yaml --port 8100
    arbitrage serve --role target --config examples/lab.yaml --port 8102
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from arbitrage.cli_support import fail
from arbitrage.servers.cli import (
    CONFIG_OPTION,
    HOST_OPTION,
    MAX_BATCH_OPTION,
    PORT_OPTION,
    THREADS_OPTION,
    VERBOSE_OPTION,
    serve_from_config,
)
from arbitrage.servers.cli import serve_command as serve_model

ROLES = ("draft", "target", "prm", "router", "pipeline")


def serve_command(
    config: Path = CONFIG_OPTION,
    role: str = typer.Option(..., "--role", "-r", help="draft, target, prm or router (one model), or pipeline"),
    port: int = PORT_OPTION,
    host: str = HOST_OPTION,
    max_batch: int = MAX_BATCH_OPTION,
    verbose: bool = VERBOSE_OPTION,
    threads: Optional[int] = THREADS_OPTION,
) -> None:
    """Serve one model (completions + scoring), or the pipeline as an OpenAI-compatible endpoint."""
    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if role != "pipeline":
        serve_model(config=config, role=role, port=port, host=host, max_batch=max_batch, verbose=verbose,
                    threads=threads)
        return
    from arbitrage.agents.pipeline_server import serve

    serve_from_config(
        config, threads,
        lambda cfg, ready: serve(cfg, host=host, port=port, max_batch=max_batch, verbose=verbose, on_ready=ready),
        lambda cfg, server: f"pipeline ({cfg.policy.name})",
    )
