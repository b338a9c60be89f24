"""What every command-line module shares: one way to fail and the torch thread count.
Imports nothing of the project, so the command-line modules of every layer can use it."""

from __future__ import annotations

import shlex
import sys
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)


BAD_INPUT_EXIT = 2
PROBLEM_ERRORS_EXIT = 3  # the run finished, but some problems ended in an error


def print_error(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit with status 2 (bad input)."""
    print_error(message)
    raise typer.Exit(code=BAD_INPUT_EXIT)


def rerun_command() -> str:
    """This invocation's command line, as `arbitrage ...` (also when started as `python -m`)."""
    return shlex.join(["arbitrage", *sys.argv[1:]])


def set_torch_threads(threads: Optional[int]) -> None:
    """Small models at batch 1 gain nothing from more threads, and oversubscribed
    cores slow torch's threaded kernels several-fold."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
