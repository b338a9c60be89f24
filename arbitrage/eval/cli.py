"""`arbitrage sweep` and `arbitrage report`.

    arbitrage sweep --policies arbitrage,rsd,oracle,draft_only,target_only \\
        --thresholds "arbitrage=0.1,0.3,0.5;rsd=0.5,0.7,0.9;oracle=-0.1,0,0.1" --limit 300 --output runs/sweep
    arbitrage report runs/sweep          # plots + runs/sweep/report.html, figures on the terminal
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from arbitrage.cli_support import PROBLEM_ERRORS_EXIT, err_console, fail, print_error, rerun_command

DEFAULT_POLICIES = "arbitrage,rsd,oracle,draft_only,target_only"
SHOWN_ERROR_MESSAGES = 3
SHOWN_MESSAGE_CHARS = 400


def load_cli_problems(problem: Optional[str], data: Optional[str], dataset: str, fields: Optional[str], limit: Optional[int]):
    """Problems from --problem, --data (file or dataset name), or the lab test split by default."""
    from arbitrage.eval.datasets import Problem, load_problems

    if problem is not None:
        if not problem.strip():
            fail("--problem is empty")
        return [Problem(id="problem-0", problem=problem, answer=None, dataset="cli", metadata={})]
    if data is None and dataset not in ("auto", "lab"):
        fail(f"--dataset {dataset} reads the file or dataset --data names; without --data the lab test split runs, "
             "so give --data (e.g. --data gsm8k or --data problems.jsonl)")
    try:
        loaded = load_problems(
            data if data is not None else "test",
            dataset=dataset if data is not None else "lab",
            fields=fields,
            limit=limit,
        )
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    for line_error in loaded.errors:
        err_console.print(f"[yellow]skipped[/yellow] {escape(f'{data}: {line_error}')}", soft_wrap=True, highlight=False)
    if not loaded.problems:
        fail(f"no usable problems in {data}")
    return loaded.problems


def sweep_command(
    config: Optional[Path] = typer.Option(None, help="YAML config (default: the shipped lab models)"),
    data: Optional[str] = typer.Option(None, help="JSONL file or dataset name (default: lab test split)"),
    dataset: str = typer.Option("auto", help="auto | gsm8k | math500 | jsonl | lab"),
    fields: Optional[str] = typer.Option(None, help="field mapping for generic JSONL, e.g. problem=q,answer=a"),
    limit: Optional[int] = typer.Option(None, min=1, help="first N problems"),
    policies: str = typer.Option(DEFAULT_POLICIES, help="comma-separated policies to run"),
    thresholds: Optional[str] = typer.Option(
        None,
        help="one list for every policy ('0.3,0.5,0.7') or per policy ('arbitrage=0.3,0.5;oracle=-0.1,0'); "
        "policies without one run at their default; draft_only/target_only run once",
    ),
    output: Path = typer.Option(..., help="sweep directory: one sub-directory per run, plus sweep.json"),
    concurrency: int = typer.Option(1, min=1, help="problems in flight at once (within each run)"),
    audit: bool = typer.Option(
        True, help="PRM-score both steps of arbitrage/rsd escalations to count wasted ones (timed apart)"
    ),
    progress: bool = typer.Option(True, help="show progress bars"),
    threads: Optional[int] = typer.Option(1, min=1, help="torch CPU threads (as for `arbitrage run`)"),
) -> None:
    """Run every policy/threshold pair on the same problems, loading each model once. Resumable."""
    from arbitrage.cli_support import set_torch_threads
    from arbitrage.config import ConfigError, load_config
    from arbitrage.eval.run_directory import RunDirectoryError, check_output_dir
    from arbitrage.eval.sweep import parse_thresholds, plan_runs, run_sweep

    try:
        check_output_dir(output)
        cfg = load_config(config)
        wanted = [p.strip() for p in policies.split(",") if p.strip()]
        parsed = parse_thresholds(thresholds)
        _, notes = plan_runs(wanted, parsed)  # refuse a bad plan before loading any model or data
    except (ConfigError, ValueError) as error:
        fail(str(error))
    set_torch_threads(threads)
    err = Console(stderr=True)
    for note in notes:
        err.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    problems = load_cli_problems(None, data, dataset, fields, limit)
    try:
        rows = run_sweep(
            cfg, problems, output, policies=wanted, thresholds=parsed, concurrency=concurrency,
            progress=progress, audit=audit,
        )
    except (ConfigError, RunDirectoryError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    print_runs(rows, f"sweep -> {output}")
    err.print(f"report: arbitrage report {escape(str(output))}", highlight=False, soft_wrap=True)
    exit_on_problem_errors([(str(Path(output) / row["run_dir"]), row["summary"]) for row in rows], rerun_command())


def exit_on_problem_errors(runs: list[tuple[str, dict]], rerun: str) -> None:
    """When a problem of these runs (run directory, summary) ended in an error: say how many,
    the first distinct messages with their counts and the command that retries them, and
    exit 3, so scripts see a run that lost problems."""
    failed = sum(summary.get("n_errors") or 0 for _, summary in runs)
    if not failed:
        return
    total = sum(summary.get("n_problems") or 0 for _, summary in runs)
    counts: dict[str, int] = {}
    for _, summary in runs:
        for item in summary.get("error_messages", []):
            counts[item["message"]] = counts.get(item["message"], 0) + item["count"]
    failed_dirs = [directory for directory, summary in runs if summary.get("n_errors")]
    print_error(f"{failed} of {total} problems ended in an error (details in results.jsonl under {', '.join(failed_dirs)}):")
    for message, count in list(counts.items())[:SHOWN_ERROR_MESSAGES]:
        shown = message if len(message) <= SHOWN_MESSAGE_CHARS else message[:SHOWN_MESSAGE_CHARS] + "..."
        err_console.print(f"  {count} x {escape(shown)}", highlight=False, soft_wrap=True)
    if len(counts) > SHOWN_ERROR_MESSAGES:
        err_console.print(f"  and {len(counts) - SHOWN_ERROR_MESSAGES} more distinct errors", highlight=False)
    err_console.print(
        f"rerun to retry them (finished problems are kept): {escape(rerun)}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(code=PROBLEM_ERRORS_EXIT)


def report_command(
    directory: Path = typer.Argument(..., help="a sweep directory (sweep.json) or one run directory"),
    trace_run: Optional[str] = typer.Option(
        None, help="run whose step traces to show (default: the arbitrage run with the most escalations)"
    ),
    max_traces: int = typer.Option(50, min=0, help="most problems shown in the step traces"),
) -> None:
    """Write PNG plots and DIR/report.html; print the runs and the trade-off figures."""
    from arbitrage.eval.report import build_report, summary_lines

    try:
        report = build_report(directory, trace_run=trace_run, max_traces=max_traces)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    print_runs(report.rows, f"runs in {directory}")
    console = Console()
    for line in summary_lines(report):
        console.print(escape(line), highlight=False, soft_wrap=True)
    for path in (*report.plots.values(), report.html_path):
        console.print(f"wrote {escape(str(path))}", highlight=False, soft_wrap=True)


def print_runs(rows: list[dict], title: str) -> None:
    from arbitrage.eval.tradeoff import run_latency

    fmt = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    table = Table(title=title, caption="latency: mean per problem, audit PRM time excluded")
    table.add_column("run", no_wrap=True)
    for header in ("τ", "n", "err", "acc", "call rate", "accept", "latency s", "wasted", "wall s"):
        table.add_column(header, justify="right")
    for row in rows:
        s = row["summary"]
        table.add_row(
            row["name"], fmt(row["threshold"]), fmt(s.get("n_problems")), fmt(s.get("n_errors")),
            fmt(s.get("accuracy")), fmt(s.get("target_call_rate")), fmt(s.get("acceptance_rate")),
            fmt(run_latency(s)), fmt(s.get("wasted_escalation_rate")), fmt(s.get("wall_s")),
        )
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: keep every figure whole rather than fit 80 columns
        console = Console(width=160)
    console.print(table)
