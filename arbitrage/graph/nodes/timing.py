"""Per-node wall-clock timing, accumulated in the state's `timings`."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def timed(timings: dict[str, float], bucket: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[bucket] = timings.get(bucket, 0.0) + time.perf_counter() - start
