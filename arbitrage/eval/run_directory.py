"""Where a run writes: the output directory's checks, kept free of heavy imports so
the command line refuses a bad --output at once, before loading torch or any model."""

from __future__ import annotations

import os
from pathlib import Path

from arbitrage.errors import InputError


class RunDirectoryError(InputError):
    """The output directory cannot be used: a file, not writable, or it holds a run
    that this one must not be mixed with."""


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Refuse an output path that is a file, lies below a file, or cannot be written,
    so a run fails on it before loading any model rather than after solving."""
    path = Path(output_dir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and not path.is_dir():
        raise RunDirectoryError(f"output directory '{path}' is a file; give a directory")
    if not existing.is_dir():
        raise RunDirectoryError(f"output directory '{path}' lies below '{existing}', which is a file; give a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"output directory '{path}' cannot be written: '{existing}' is not writable")
    return path
