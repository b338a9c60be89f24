"""Checked fields out of JSON, on both sides of the wire: a reply a model server sent
(a bad one raises BackendError naming the field and the URL) and a request our server
received (RequestError naming the field). Never a bare KeyError or TypeError."""

from __future__ import annotations

import math
from typing import Any

from arbitrage.servers.http_client import BackendError

MISSING = object()
Kind = type | tuple[type, ...]


class RequestError(Exception):
    """A request our server cannot take; it answers with `status` and this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def reply_field(obj: Any, path: str, url: str, kind: Kind | None = None, *, optional: bool = False, at: str = ""):
    """Follow a dotted path (`choices.0.text`) through dicts and lists; `at` is where `obj`
    itself sits in the reply, for the message. `optional`: absent or null gives None."""
    value, walked = _walk(obj, path, at)
    if value is MISSING or (value is None and optional):
        if optional:
            return None
        raise BackendError(f"{url}: reply has no field '{walked}'")
    if kind is not None and not is_kind(value, kind):
        raise BackendError(f"{url}: reply field '{walked}' should be {_kind_name(kind)}, got {type(value).__name__} {short(value)}")
    return value


def request_field(obj: Any, path: str, kind: Kind, *, at: str = "", default: Any = MISSING):
    """The request's field at `path` under `at`; absent or null gives `default`, or is an error without one."""
    value, walked = _walk(obj, path, at)
    if value is MISSING or value is None:
        if default is not MISSING:
            return default
        raise RequestError(f"request field '{walked}' is required")
    if not is_kind(value, kind):
        raise RequestError(f"request field '{walked}' should be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def request_strings(obj: Any, path: str, *, at: str = "") -> list[str]:
    values = request_field(obj, path, list, at=at)
    if not all(isinstance(item, str) for item in values):
        raise RequestError(f"request field '{_join(at, path)}' should be a list of strings")
    return values


def request_object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise RequestError(f"request field '{where}' should be an object")
    return value


def finite_numbers(values: list, where: str, url: str) -> list[float]:
    """A reply's list of numbers, each finite."""
    out = []
    for index, value in enumerate(values):
        if not is_kind(value, float) or not math.isfinite(value):
            raise BackendError(f"{url}: reply field '{where}.{index}' is not a finite number: {short(value)}")
        out.append(float(value))
    return out


def is_kind(value: Any, kind: Kind) -> bool:
    """isinstance, except that a bool is no number and an int is a float."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _walk(obj: Any, path: str, at: str) -> tuple[Any, str]:
    """(the value at `path`, or MISSING; the dotted path walked up to where it stopped)."""
    current = obj
    walked = [at] if at else []
    for part in path.split("."):
        walked.append(part)
        if isinstance(current, list) and part.isdigit():
            index = int(part)
            current = current[index] if index < len(current) else MISSING
        elif isinstance(current, dict):
            current = current.get(part, MISSING)
        else:
            current = MISSING
        if current is MISSING:
            break
    return current, ".".join(walked)


def _join(at: str, path: str) -> str:
    return f"{at}.{path}" if at else path


def _kind_name(kind: Kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
