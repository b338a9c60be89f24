"""Finding the final `\\boxed{...}` answer in model text: the one implementation that
the graph's finish check and answer grading both use. No heavy imports: the graph
imports this on every step."""

from __future__ import annotations

import re

# \boxed or \fbox as a whole command (not \boxedx); the argument is checked separately.
BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def braced(text: str, open_at: int) -> str | None:
    """Content of the brace group opening at `open_at`, or None if it never closes."""
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # \{ \} \\ are not grouping braces
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} / \\fbox{...}, or of `\\boxed 5` (a
    one-token argument, valid LaTeX); None if there is none. A box whose braces never
    close (a truncated step) is no answer: an earlier complete one is returned instead."""
    for match in reversed(list(BOX_RE.finditer(text))):
        rest = text[match.end() :]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            content = braced(text, len(text) - len(stripped))
            if content is not None:
                return content
        elif stripped and rest[:1].isspace():
            return stripped.split(None, 1)[0].split("$", 1)[0]
    return None
