"""`arbitrage serve`: one model of the config over HTTP, or with `--role pipeline` the whole
speculative pipeline as an OpenAI-compatible endpoint (arbitrage/agents/pipeline_server.py).

    arbitrage serve --role pipeline --config examples/lab.yaml --port 8100
    arbitrage serve --role target --config examples/lab.yaml --port 8102
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from arbitrage.cli_support import fail, set_torch_threads
from arbitrage.config import ConfigError, load_config

ROLES = ("draft", "target", "prm", "router", "pipeline")


def serve_command(
    config: Path = typer.Option(..., "--config", "-c", help="run config (YAML) naming the models"),
    role: str = typer.Option(..., "--role", "-r", help="draft, target, prm or router (one model), or pipeline"),
    port: int = typer.Option(..., "--port", "-p", min=0, max=65535, help="0 picks a free port"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to bind; loopback unless you say otherwise"),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="most concurrent requests run as one model call"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log every request"),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (several servers on few cores: 1 each)"
    ),
) -> None:
    """Serve one model (completions + scoring), or the pipeline as an OpenAI-compatible endpoint."""
    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if role != "pipeline":
        from arbitrage.servers.cli import serve_command as serve_model

        serve_model(config=config, role=role, port=port, host=host, max_batch=max_batch, verbose=verbose,
                    threads=threads)
        return
    from arbitrage.agents.pipeline_server import serve

    set_torch_threads(threads)
    try:
        cfg = load_config(config)
    except ConfigError as error:
        fail(str(error))

    def ready(server) -> None:
        # One line on stdout that scripts can wait for.
        print(f"serving pipeline ({cfg.policy.name}) on {server.url}", flush=True)

    try:
        serve(cfg, host=host, port=port, max_batch=max_batch, verbose=verbose, on_ready=ready)
    except (ConfigError, ValueError, OSError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        pass
