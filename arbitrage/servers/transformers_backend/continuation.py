"""Reading a causal LM's log-probabilities of a given continuation: one forward over the
tokens no cache holds yet (a prefill), no decoding.

Rows whose uncached parts are of similar length share one left-padded forward (see
`batch_cache`); left padding puts every row's last token in the last column, so the
logits of each row's scored tokens are the last columns of the batch. Only those
columns go through the vocabulary projection when the model allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arbitrage.servers.transformers_backend.batch_cache import extract_row, length_groups, padded_forward, start_batch


@dataclass
class ScoredRow:
    ids: list[int]  # prefix + scored tokens
    scored: int  # how many of the last ids to score
    cache: Any  # a DynamicCache holding ids[:reused]; reused < len(ids) - scored
    reused: int


def score_rows(model, rows: list[ScoredRow], *, device, pad_id: int, last_logits_only: bool, keep_caches: bool):
    """(log-probability of each row's last `scored` ids, the row's cache now holding all its
    ids, or None without `keep_caches`) per row. Callers hold the model's lock and inference mode."""
    import torch

    results: list[tuple[list[float], Any] | None] = [None] * len(rows)
    for group in length_groups([len(row.ids) - row.reused for row in rows]):
        cache, feed, mask = start_batch(
            model.config, [rows[r].cache for r in group], [rows[r].reused for r in group],
            [rows[r].ids[rows[r].reused :] for r in group], pad_id=pad_id, device=device,
        )
        width = max(rows[r].scored for r in group)
        # The logit at a position predicts the next token: the scored tokens' logits are the
        # `width` columns before the last one.
        keep = {"logits_to_keep": width + 1} if last_logits_only else {}
        logits = padded_forward(model, feed, mask, cache, **keep).logits[:, -(width + 1) : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        for row_index, r in enumerate(group):
            row = rows[r]
            targets = torch.tensor(row.ids[-row.scored :], device=logprobs.device)
            values = logprobs[row_index, width - row.scored :].gather(-1, targets[:, None])[:, 0].tolist()
            row_cache = extract_row(model.config, cache, row_index, mask[row_index]) if keep_caches else None
            if row_cache is not None and row_cache.get_seq_length() != len(row.ids):
                raise RuntimeError(f"row cache holds {row_cache.get_seq_length()} tokens, expected {len(row.ids)}")
            results[r] = (values, row_cache)
    return results
