"""KV caches kept between calls, keyed (by session or problem), reused up to the longest
common token prefix with the next input. Callers hold the model's lock."""

from __future__ import annotations

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

    def take(self, key: str | None, ids: Sequence[int]) -> tuple[Any, int, Any]:
        """(cache holding `ids[:reused]`, reused, payload) with at least one id left to feed.

        The entry is removed: if the forward fails midway, no half-updated cache stays.
        """
        from arbitrage.servers.transformers_backend.growing_cache import new_cache

        entry = self._entries.pop(key, None) if key is not None else None
        if entry is not None:
            cached_ids, cache, payload = entry
            keep = min(common_prefix_len(cached_ids, ids), len(ids) - 1)
            if keep > 0 and cache.is_croppable and cache.get_seq_length() == len(cached_ids):
                if keep < len(cached_ids):
                    cache.crop(keep - len(cached_ids))
                return cache, keep, payload
        return new_cache(self.model_config), 0, None

    def put(self, key: str | None, ids: list[int], cache, payload: Any = None) -> None:
        if key is None:
            return
        self._entries[key] = (ids, cache, payload)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def cached_tokens(self, key: str) -> int:
        entry = self._entries.get(key)
        return len(entry[0]) if entry else 0

    def __len__(self) -> int:
        return len(self._entries)
