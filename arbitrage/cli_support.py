"""What every command-line module shares: one way to fail, where problems come from, and
the torch thread count. Kept apart from `arbitrage.cli` so the sub-command modules that
`cli` mounts do not import it back."""

from __future__ import annotations

from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit with status 2 (bad input)."""
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def load_cli_problems(problem: Optional[str], data: Optional[str], dataset: str, fields: Optional[str], limit: Optional[int]):
    """Problems from --problem, --data (file or dataset name), or the lab test split by default."""
    from arbitrage.eval.datasets import Problem, load_problems

    if problem is not None:
        if not problem.strip():
            fail("--problem is empty")
        return [Problem(id="problem-0", problem=problem, answer=None, dataset="cli", metadata={})]
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


def set_torch_threads(threads: Optional[int]) -> None:
    """Small models at batch 1 gain nothing from more threads, and oversubscribed
    cores slow torch's threaded kernels several-fold."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
