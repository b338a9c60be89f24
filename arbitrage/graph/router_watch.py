"""One run's check that its router says something: a router whose scores do not vary
over the first routed steps (a feature router standardised on another draft's logprobs
saturates at 0 or 1) would route every step the same way, silently. The router node
feeds every score here; the check costs a min and a max until it has decided."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

WINDOW = 50  # routed steps looked at
TOLERANCE = 1e-6  # scores closer than this count as one


class ConstantScoreWatch:
    """Warns once if the first `window` scores all lie within `tolerance` of each other."""

    def __init__(self, described: str = "the router", *, window: int = WINDOW, tolerance: float = TOLERANCE):
        self.described, self.window, self.tolerance = described, window, tolerance
        self._lock = threading.Lock()
        self._seen = 0
        self._low, self._high = float("inf"), float("-inf")
        self.decided = False
        self.warned = False

    def observe(self, score: float) -> None:
        if self.decided:
            return
        with self._lock:
            if self.decided:
                return
            self._seen += 1
            self._low, self._high = min(self._low, score), max(self._high, score)
            if self._high - self._low > self.tolerance:
                self.decided = True
            elif self._seen >= self.window:
                self.decided = self.warned = True
                log.warning(
                    "%s gave the same score (%.6g) on all of the first %d routed steps: it never varies, so every "
                    "step is routed alike; it may not fit this draft (a feature router is standardised on the "
                    "draft it was fitted on)", self.described, self._low, self._seen,
                )
