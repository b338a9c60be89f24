"""Moving per-row KV caches in and out of one left-padded batch, and the forward over it.

A batch row's cache holds its tokens at the positions where the batch attention mask
is 1; everything else is padding the mask hides. Left padding puts every row's newest
token in the last column; position ids count only a row's real tokens, so a row sees
exactly what it would see alone. Only plain `DynamicLayer` caches
(every layer holding all past keys and values) can be cut and pasted like this; for
other cache kinds (sliding windows, linear attention) callers prefill rows afresh.
"""

from __future__ import annotations

from typing import Sequence


def supports_row_surgery(model_config) -> bool:
    """Whether a DynamicCache for this model is made of plain DynamicLayers only."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model_config).layers)


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
    return model(input_ids=feed, past_key_values=cache, use_cache=True, **kwargs)


def merge_rows(model_config, caches: Sequence, lengths: Sequence[int]):
    """One batch cache from per-row caches holding `lengths` tokens each, left-padded
    with zeros to the longest. A single row's cache is used as is."""
    import torch
    from transformers import DynamicCache

    longest = max(lengths)
    if len(caches) == 1:
        return caches[0]
    if longest == 0:
        return DynamicCache(config=model_config)
    template = next(cache for cache, n in zip(caches, lengths) if n > 0).layers
    layers = []
    for index, layer in enumerate(template):
        keys, values = [], []
        for cache, n in zip(caches, lengths):
            pad = (1, layer.keys.shape[1], longest - n, layer.keys.shape[3])
            row_keys = cache.layers[index].keys if n else layer.keys[:1, :, :0]
            row_values = cache.layers[index].values if n else layer.values[:1, :, :0]
            keys.append(torch.cat([layer.keys.new_zeros(pad), row_keys], dim=2))
            values.append(torch.cat([layer.values.new_zeros(pad), row_values], dim=2))
        layers.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(ddp_cache_data=layers, config=model_config)


def extract_row(model_config, cache, row: int, row_mask):
    """Row `row`'s tokens (where `row_mask` is 1) as a cache of their own."""
    from transformers import DynamicCache

    if cache.layers[0].keys.shape[0] == 1 and bool(row_mask.all()):
        return cache
    keep = row_mask.nonzero().flatten()
    layers = [(layer.keys[row : row + 1, :, keep], layer.values[row : row + 1, :, keep]) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=layers, config=model_config)


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
