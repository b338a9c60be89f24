"""The one base class of errors the user can fix by changing what they gave.

Every error raised for bad input (a config field, a dataset file, a policy name, an
output directory) derives from `InputError`, so the command line prints it as one
line, `error: ...`, and exits 2 instead of showing a traceback. Imports nothing.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input; the message names the field, path or value and says what is expected."""
