"""The `arbitrage` command line.

    arbitrage run --limit 20 --output runs/lab          # lab models, lab test split
    arbitrage run --limit 20 --output runs/lab --checkpoint runs/lab/steps.sqlite   # resumable mid-problem
    arbitrage run --config examples/smollm2.yaml --data ../shared/data/gsm8k_test.jsonl --limit 2
    arbitrage graph --policy arbitrage --format png --output graph.png
    arbitrage serve --role pipeline --config examples/lab.yaml --port 8100   # an OpenAI-compatible endpoint
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from arbitrage.cli_support import BAD_INPUT_EXIT, err_console, fail, print_error, rerun_command, set_torch_threads
from arbitrage.eval.cli import load_cli_problems
from arbitrage.config import Config, ConfigError, load_config
from arbitrage.errors import InputError
from arbitrage.policies import POLICY_NAMES

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Step-level speculative reasoning (Arbitrage).")


def _load(config_path: Optional[Path], policy: Optional[str], threshold: Optional[float]) -> Config:
    try:
        config = load_config(config_path).with_overrides(policy=policy, threshold=threshold)
    except ConfigError as error:
        fail(str(error))
    if threshold is not None and not config.policy.uses_threshold:
        err_console.print(f"note: policy {config.policy.name} takes no threshold; --threshold {threshold} is ignored",
                          highlight=False, soft_wrap=True)
    elif config.threshold_is_default:
        err_console.print(
            f"note: threshold {config.threshold} is policy {config.policy.name}'s default (compared with "
            f"{config.policy.threshold_meaning}); set --threshold or threshold: in the config to choose one",
            highlight=False, soft_wrap=True,
        )
    return config


def run_title(config: Config) -> str:
    if config.threshold is None:
        return config.policy.name
    return f"{config.policy.name} (threshold {config.threshold}{', its default' if config.threshold_is_default else ''})"


def print_summary(summary: dict, title: str) -> None:
    table = Table(title=title, show_header=False)
    fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    for key in (
        "n_problems", "n_errors", "accuracy", "acceptance_rate", "target_call_rate", "draft_tokens",
        "target_tokens", "discarded_draft_tokens", "router_calls", "router_prefill_calls", "prm_calls",
        "target_calls", "wasted_escalations", "wall_s",
    ):
        table.add_row(key, fmt(summary.get(key)))
    latency = summary.get("latency_s", {})
    table.add_row("latency_s mean/p50/p95", " / ".join(fmt(latency.get(k)) for k in ("mean", "p50", "p95")))
    for node, seconds in sorted(summary.get("time_by_node_s", {}).items()):
        table.add_row(f"time {node} (s)", fmt(seconds))
    Console().print(table)


@app.command()
def run(
    config: Optional[Path] = typer.Option(None, help="YAML config (default: the shipped lab models)"),
    problem: Optional[str] = typer.Option(None, help="solve this one problem text"),
    data: Optional[str] = typer.Option(None, help="JSONL file or dataset name (default: lab test split)"),
    dataset: str = typer.Option("auto", help="auto | gsm8k | math500 | jsonl | lab"),
    fields: Optional[str] = typer.Option(None, help="field mapping for generic JSONL, e.g. problem=q,answer=a"),
    limit: Optional[int] = typer.Option(None, min=1, help="first N problems"),
    policy: Optional[str] = typer.Option(None, help=f"one of {', '.join(POLICY_NAMES)}"),
    threshold: Optional[float] = typer.Option(
        None, help="the policy's threshold (arbitrage: router score; rsd: draft PRM score; oracle: s_t - s_d)"
    ),
    output: Path = typer.Option(Path("runs/latest"), help="directory for results.jsonl and summary.json"),
    concurrency: int = typer.Option(1, min=1, help="problems in flight at once"),
    audit: bool = typer.Option(False, help="PRM-score both steps of escalations to count wasted ones"),
    checkpoint: Optional[Path] = typer.Option(
        None, help="SQLite file of per-step graph states: a killed run resumes each problem at its last committed "
        "step (default: checkpoint: in the config; none)"
    ),
    progress: bool = typer.Option(True, help="show a progress bar"),
    threads: Optional[int] = typer.Option(
        1, min=1, help="torch CPU threads; 1 suits small models (measured 8x faster than 2 on a busy 2-core machine)"
    ),
) -> None:
    """Solve problems with the configured policy; results are written as each problem finishes.
    Exits 3 when a problem ended in an error (rerunning the same command retries those)."""
    from arbitrage.eval.cli import exit_on_problem_errors
    from arbitrage.eval.run_directory import check_output_dir

    cfg = _load(config, policy, threshold)
    if audit:
        cfg = cfg.model_copy(update={"audit_escalations": True})
    if checkpoint is not None:
        cfg = cfg.model_copy(update={"checkpoint": str(checkpoint)})
    problems = load_cli_problems(problem, data, dataset, fields, limit)
    try:
        check_output_dir(output)  # before torch and the models load: a bad --output fails at once
    except InputError as error:
        fail(str(error))
    set_torch_threads(threads)
    from arbitrage.eval.run import run_batch
    from arbitrage.servers.factory import load_models

    try:
        models = load_models(cfg)
        summary = run_batch(cfg, problems, output, models=models, concurrency=concurrency, progress=progress)
    except (InputError, FileNotFoundError) as error:
        fail(str(error))
    print_summary(summary, f"{run_title(cfg)} -> {output}")
    exit_on_problem_errors([(str(output), summary)], rerun_command())


@app.command()
def graph(
    policy: str = typer.Option("arbitrage", help=f"one of {', '.join(POLICY_NAMES)}"),
    format: str = typer.Option("mermaid", "--format", help="mermaid | png | svg"),
    output: Optional[Path] = typer.Option(None, help="file to write (mermaid prints to stdout without it)"),
    audit: bool = typer.Option(False, help="include the audit scoring of escalations"),
) -> None:
    """Draw a policy's routing graph, offline."""
    from arbitrage.graph.builder import build_graph
    from arbitrage.graph.drawing import draw

    try:
        text = draw(build_graph(policy, audit_escalations=audit), format, output, title=f"policy: {policy}")
    except ValueError as error:
        fail(str(error))
    if text is not None and output is None:
        typer.echo(text)


def _mount_subcommands() -> None:
    from arbitrage.agents.cli import serve_command
    from arbitrage.eval.cli import report_command, sweep_command
    from arbitrage.lab.cli import lab_app
    from arbitrage.router.cli import router_app
    from arbitrage.servers.cli import servers_app

    app.add_typer(lab_app, name="lab", help="Train and evaluate the lab models.")
    app.add_typer(router_app, name="router", help="Router data, training, evaluation and ablations.")
    app.add_typer(servers_app, name="servers", help="Launch, inspect and stop sglang / vLLM servers from a config.")
    app.command("serve")(serve_command)
    app.command("sweep")(sweep_command)
    app.command("report")(report_command)


_mount_subcommands()


def main() -> None:
    """The `arbitrage` command. Bad input of any subcommand ends in one `error: ...`
    line and exit status 2; an unexpected exception keeps its traceback (status 1)."""
    try:
        app()
    except InputError as error:
        print_error(str(error))
        sys.exit(BAD_INPUT_EXIT)


if __name__ == "__main__":
    main()
