"""KV caches kept between calls, keyed (by session or problem), reused up to the longest
common token prefix with the next input.

Callers hold the model's lock around `take` ... forward ... `put`. The store has its own
lock besides, so `drop` (a finished problem releasing its cache) never waits for a
forward that is running on the model: a problem that ends must not queue behind a batch
of other problems' steps."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Sequence


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCacheStore:
    """An LRU of (token ids in the cache, DynamicCache, caller payload) per key."""

    def __init__(self, model_config, max_entries: int):
        self.model_config = model_config
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[list[int], Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._taken: set[str] = set()  # keys whose cache a forward is using now
        self._dropped_while_taken: set[str] = set()

    def take(self, key: str | None, ids: Sequence[int], *, reuse_at_most: int | None = None) -> tuple[Any, int, Any]:
        """(cache holding `ids[:reused]`, reused, payload) with at least one id left to feed,
        and at most `reuse_at_most` reused (a caller that needs the logits of earlier
        positions cuts the cache back further).

        The entry is removed: if the forward fails midway, no half-updated cache stays.
        """
        from arbitrage.servers.transformers_backend.growing_cache import new_cache

        entry = None
        if key is not None:
            with self._lock:
                entry = self._entries.pop(key, None)
                self._taken.add(key)
                self._dropped_while_taken.discard(key)
        if entry is not None:
            cached_ids, cache, payload = entry
            keep = min(common_prefix_len(cached_ids, ids), len(ids) - 1)
            if reuse_at_most is not None:
                keep = min(keep, reuse_at_most)
            if keep > 0 and cache.is_croppable and cache.get_seq_length() == len(cached_ids):
                if keep < len(cached_ids):
                    cache.crop(keep - len(cached_ids))
                return cache, keep, payload
        return new_cache(self.model_config), 0, None

    def put(self, key: str | None, ids: list[int], cache, payload: Any = None) -> None:
        if key is None:
            return
        with self._lock:
            self._taken.discard(key)
            if key in self._dropped_while_taken:  # the session ended during the forward
                self._dropped_while_taken.discard(key)
                return
            self._entries[key] = (ids, cache, payload)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
            if key in self._taken:
                self._dropped_while_taken.add(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def cached_tokens(self, key: str) -> int:
        with self._lock:
            entry = self._entries.get(key)
        return len(entry[0]) if entry else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
