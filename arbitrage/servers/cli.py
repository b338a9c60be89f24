"""Command-line entry points for serving models and managing sglang / vLLM servers
(docs/SERVING.md).

    arbitrage serve --config examples/lab.yaml --role target --port 8102
    arbitrage servers launch --config examples/sglang_llama.yaml --dry-run
    arbitrage servers launch --config examples/sglang_llama.yaml --roles draft,target
    arbitrage servers launch --config examples/sglang_2node.yaml --node-rank 1 --dry-run
    arbitrage servers status
    arbitrage servers stop

(`python -m arbitrage.servers.cli ...` runs the same commands.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from arbitrage.cli_support import fail, set_torch_threads
from arbitrage.config import ConfigError, load_config

DEFAULT_RUN_DIR = Path("runs/servers")

console = Console()


# The options of every serve command (also `arbitrage serve --role pipeline`, arbitrage/agents/cli.py).
CONFIG_OPTION = typer.Option(..., "--config", "-c", help="run config (YAML) naming the models")
PORT_OPTION = typer.Option(..., "--port", "-p", min=0, max=65535, help="0 picks a free port")
HOST_OPTION = typer.Option("127.0.0.1", "--host", help="interface to bind; loopback unless you say otherwise")
MAX_BATCH_OPTION = typer.Option(32, "--max-batch", min=1, help="most concurrent requests run as one model call")
VERBOSE_OPTION = typer.Option(False, "--verbose", "-v", help="log every request")
THREADS_OPTION = typer.Option(None, "--threads", min=1, help="torch CPU threads (several servers on few cores: 1 each)")


def serve_command(
    config: Path = CONFIG_OPTION,
    role: str = typer.Option(..., "--role", "-r", help="draft, target, prm or router"),
    port: int = PORT_OPTION,
    host: str = HOST_OPTION,
    max_batch: int = MAX_BATCH_OPTION,
    verbose: bool = VERBOSE_OPTION,
    threads: Optional[int] = THREADS_OPTION,
) -> None:
    """Serve one of the config's models over HTTP (completions + scoring), batching concurrent requests."""
    from arbitrage.servers.http_server import serve

    if role not in ("draft", "target", "prm", "router"):
        fail(f"--role must be draft, target, prm or router, got {role!r}")
    serve_from_config(
        config, threads,
        lambda cfg, ready: serve(role, cfg, host=host, port=port, max_batch=max_batch, verbose=verbose, on_ready=ready),
        lambda cfg, server: f"{role} ({server.name})",
    )


def serve_from_config(config_path: Path, threads: Optional[int], serve, describe) -> None:
    """Load the config, run `serve(config, on_ready)` until interrupted, and print one line on
    stdout that scripts can wait for: `serving {describe(config, server)} on URL`."""
    set_torch_threads(threads)
    try:
        cfg = load_config(config_path)
    except ConfigError as error:
        fail(str(error))

    def ready(server) -> None:
        print(f"serving {describe(cfg, server)} on {server.url}", flush=True)

    try:
        serve(cfg, ready)
    except (ConfigError, ValueError, OSError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        pass


servers_app = typer.Typer(help="Start, inspect and stop the sglang / vLLM servers named in a config.", no_args_is_help=True)


def _split_roles(roles: Optional[List[str]]) -> list[str]:
    return [role.strip() for item in roles or [] for role in item.split(",") if role.strip()]


@servers_app.command("launch")
def launch_command(
    config: Path = typer.Option(..., "--config", "-c", help="config whose models have launch: sections"),
    roles: Optional[List[str]] = typer.Option(None, "--roles", help="roles to launch (repeat or comma-separate); default all with launch:"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the exact commands and start nothing"),
    node_rank: Optional[int] = typer.Option(
        None, "--node-rank", min=0, help="this machine's rank for multi-node roles (overrides launch.node_rank); above 0 launches only those roles"
    ),
    run_dir: Path = typer.Option(DEFAULT_RUN_DIR, "--run-dir", help="where logs, pid files and records go"),
    deadline_s: float = typer.Option(900.0, "--deadline", help="seconds to wait until every server is ready"),
    python: str = typer.Option(sys.executable, "--python", help="interpreter that has sglang / vllm / sglang-router installed"),
) -> None:
    """Start each role's sglang or vLLM server(s), and an sglang-router in front of replicas; wait until all are ready."""
    from arbitrage.servers.launch import LaunchError, ServerManager, launch_specs, network_warnings

    try:
        specs = launch_specs(load_config(config), _split_roles(roles), python=python, node_rank=node_rank)
    except ConfigError as error:
        fail(str(error))
    for warning in network_warnings(specs):
        print(warning, file=sys.stderr)
    if dry_run:
        for spec in specs:
            print(spec.shell())
        return
    manager = ServerManager(run_dir)
    for spec in specs:
        console.print(f"[bold]{escape(spec.name)}[/bold]: {escape(spec.shell())}", highlight=False)
    try:
        with console.status(f"waiting for {len(specs)} server(s) to become ready (deadline {deadline_s:g}s)"):
            records = manager.launch(specs, deadline_s=deadline_s)
    except LaunchError as error:
        fail(str(error))
    for record in records:
        state = "ready" if record.ready_url else "running (no HTTP on this node rank)"
        console.print(f"{record.name}: {state} on port {record.port} (pid {record.pid}, log {record.log})", markup=False, highlight=False)


@servers_app.command("status")
def status_command(
    run_dir: Path = typer.Option(DEFAULT_RUN_DIR, "--run-dir", help="the run dir given to launch"),
) -> None:
    """Show the launched servers: running, ready, pid, port, log."""
    from arbitrage.servers.launch import ServerManager

    statuses = ServerManager(run_dir).status()
    if not statuses:
        console.print(f"no servers recorded under {run_dir}", markup=False)
        return
    table = Table("server", "pid", "port", "running", "ready", "log")
    for status in statuses:
        ready = "-" if status.healthy is None else _yes(status.healthy)
        table.add_row(escape(status.name), str(status.pid), str(status.port), _yes(status.running), ready, escape(status.log))
    console.print(table)


@servers_app.command("stop")
def stop_command(
    roles: Optional[List[str]] = typer.Option(None, "--roles", help="roles (or servers such as draft.1) to stop; default all"),
    run_dir: Path = typer.Option(DEFAULT_RUN_DIR, "--run-dir", help="the run dir given to launch"),
    grace_s: float = typer.Option(30.0, "--grace", help="seconds between SIGTERM and SIGKILL"),
) -> None:
    """Stop launched servers (SIGTERM to each server's process group, SIGKILL after --grace); routers first."""
    from arbitrage.servers.launch import LaunchError, ServerManager

    try:
        stopped = ServerManager(run_dir).stop(_split_roles(roles) or None, grace_s=grace_s)
    except LaunchError as error:
        fail(str(error))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else f"no servers recorded under {run_dir}", markup=False)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _standalone_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True)
    app.command("serve")(serve_command)
    app.add_typer(servers_app, name="servers")
    return app


if __name__ == "__main__":
    _standalone_app()()
