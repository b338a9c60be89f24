"""Moving per-row KV caches in and out of one left-padded batch, and the forward over it.

A batch row's cache holds its tokens at the positions where the batch attention mask
is 1; everything else is padding the mask hides. Left padding puts every row's newest
token in the last column; position ids count only a row's real tokens, so a row sees
exactly what it would see alone. Only plain `DynamicLayer` caches
(every layer holding all past keys and values) can be cut and pasted like this; for
other cache kinds (sliding windows, linear attention) callers prefill rows afresh.
"""

from __future__ import annotations

import functools
import inspect
from typing import Sequence


def supports_row_surgery(model_config) -> bool:
    """Whether a DynamicCache for this model is made of plain DynamicLayers only."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model_config).layers)


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Row indices grouped for padded forwards: longest first, a row joins the current
    group while it is at least half the group's longest, so padding at most doubles the
    tokens fed. A new problem's prompt thus does not pad the one-step rows around it (on
    CPU a long batched prefill saves nothing over prefilling the rows one by one)."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and 2 * lengths[index] >= lengths[groups[-1][0]]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def start_batch(model_config, caches: Sequence, reused: Sequence[int], suffixes: Sequence[list[int]], *, pad_id: int, device):
    """(batch cache, input ids, attention mask) for rows whose caches hold `reused` tokens
    and whose `suffixes` are still to be fed. Each mask row reads
    [pad | its cached tokens | pad | its new tokens]."""
    import torch

    past, width = max(reused), max(len(s) for s in suffixes)
    cache = merge_rows(model_config, caches, reused)
    mask = torch.tensor(
        [[0] * (past - n) + [1] * n + [0] * (width - len(s)) + [1] * len(s) for n, s in zip(reused, suffixes)],
        device=device,
    )
    feed = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in suffixes], device=device)
    return cache, feed, mask


def padded_forward(model, feed, mask, cache, **kwargs):
    """One forward of `feed` after `cache`; mask and position ids only where there is padding
    (without it the model's own causal mask and positions serve, and cost less)."""
    if not bool(mask.all()):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -feed.shape[1] :]
        kwargs.update(attention_mask=mask, position_ids=positions)
    return model(input_ids=feed, use_cache=True, **cache_argument(model, cache), **kwargs)


def cache_argument(model, cache) -> dict:
    """The forward keyword for a KV cache: `cache` in newer transformers, which warn on
    every call given `past_key_values` and drop it in 5.40; `past_key_values` before."""
    return {_cache_keyword(type(model)): cache}


@functools.cache
def _cache_keyword(model_class) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def merge_rows(model_config, caches: Sequence, lengths: Sequence[int]):
    """One batch cache from per-row caches holding `lengths` tokens each, left-padded
    with zeros to the longest. A single row's cache is used as is."""
    from arbitrage.servers.transformers_backend.growing_cache import filled_cache, new_cache

    longest = max(lengths)
    if len(caches) == 1:
        return caches[0]
    if longest == 0:
        return new_cache(model_config)
    template = next(cache for cache, n in zip(caches, lengths) if n > 0).layers
    layers = []
    for index, layer in enumerate(template):
        batch_kv = []
        for part in ("keys", "values"):
            like = getattr(layer, part)
            merged = like.new_zeros(len(caches), like.shape[1], longest, like.shape[3])
            for row, (cache, n) in enumerate(zip(caches, lengths)):
                if n:
                    merged[row, :, longest - n :] = getattr(cache.layers[index], part)[0]
            batch_kv.append(merged)
        layers.append(tuple(batch_kv))
    return filled_cache(model_config, layers)


def extract_row(model_config, cache, row: int, row_mask):
    """Row `row`'s tokens (where `row_mask` is 1) as a cache of their own."""
    from arbitrage.servers.transformers_backend.growing_cache import filled_cache

    if cache.layers[0].keys.shape[0] == 1 and bool(row_mask.all()):
        return cache
    keep = row_mask.nonzero().flatten()
    return filled_cache(model_config, [(layer.keys[row : row + 1, :, keep], layer.values[row : row + 1, :, keep]) for layer in cache.layers])


def keep_rows(cache, mask, rows: list[int], *, trim: bool):
    """Drop the other rows from the batch cache and mask; with `trim`, also the leading
    columns that are padding in every remaining row (a finished long row then no longer
    costs attention)."""
    import torch

    index = torch.tensor(rows, device=mask.device)
    cache.batch_select_indices(index)
    mask = mask[index]
    first = int(mask.any(dim=0).int().argmax()) if trim else 0
    if first > 0:
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
        mask = mask[:, first:]
    return mask
