"""The decode loop: several prefixes continued together, one forward per token.

Rows are left-padded (see `batch_cache`), so every row's next token sits in the last
column. Greedy and sampled rows mix: each row keeps its own sampling, seeded generator,
token cap and stop rules (`StepStopper`). A row that has ended (separator, EOS, its own
token cap) leaves the batch at once and costs nothing further. A batch of one is the
single-step path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arbitrage.protocols import SamplingParams, StepOutput
from arbitrage.servers.transformers_backend.batch_cache import (
    cache_argument, extract_row, keep_rows, padded_forward, start_batch,
)
from arbitrage.servers.transformers_backend.step_stop import StepStopper


@dataclass
class Row:
    ids: list[int]  # the whole prefix
    cache: Any  # a DynamicCache holding ids[:reused]
    reused: int
    stopper: StepStopper
    sampling: SamplingParams
    rng: Any = None  # a seeded torch.Generator for sampled rows with a seed


@dataclass
class Decoded:
    output: StepOutput
    cache_ids: list[int]  # what `cache` holds: the prefix and every generated token but the last
    cache: Any  # None when the row's cache could not be cut out of the batch


def choose_token(logits, sampling: SamplingParams, rng) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top_p) sampling."""
    import torch

    if sampling.greedy:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= sampling.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        return int(order[torch.multinomial(sorted_probs, 1, generator=rng)])
    return int(torch.multinomial(probs, 1, generator=rng))


def seeded_rng(sampling: SamplingParams, device):
    import torch

    if sampling.greedy or sampling.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(sampling.seed)


def decode_rows(model, rows: list[Row], *, device, pad_id: int, last_logits_only: bool, row_surgery: bool) -> list[Decoded]:
    """Continue every row until its stopper ends it. Callers hold the model's lock and
    inference mode. With `row_surgery` false, rows of a batch above one must come with
    empty caches, and their caches are not returned."""
    import torch

    keep_logits = {"logits_to_keep": 1} if last_logits_only else {}
    if row_surgery and len(rows) > 1:
        _prefill_long_rows_alone(model, rows, device=device, keep_logits=keep_logits)
    cache, feed, mask = start_batch(
        model.config, [row.cache for row in rows], [row.reused for row in rows],
        [row.ids[row.reused :] for row in rows], pad_id=pad_id, device=device,
    )
    live = list(range(len(rows)))  # the rows still in the batch, in batch order
    done: list[Decoded | None] = [None] * len(rows)
    while live:
        out = padded_forward(model, feed, mask, cache, **keep_logits)
        logits = out.logits[:, -1].float()
        tokens = logits.argmax(-1).tolist()
        for i, r in enumerate(live):
            if not rows[r].sampling.greedy:
                tokens[i] = choose_token(logits[i], rows[r].sampling, rows[r].rng)
        chosen = torch.tensor(tokens, device=logits.device)
        logprobs = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None])[:, 0].tolist()
        still = []
        for i, r in enumerate(live):
            output = rows[r].stopper.push(tokens[i], logprobs[i])
            if output is None:
                still.append(i)
                continue
            # The last chosen token was never fed, so the cache holds everything before it.
            cache_ids = rows[r].ids + rows[r].stopper.tokens[:-1]
            row_cache = extract_row(model.config, cache, i, mask[i]) if row_surgery or len(rows) == 1 else None
            if row_cache is not None and row_cache.get_seq_length() != len(cache_ids):
                raise RuntimeError(f"row cache holds {row_cache.get_seq_length()} tokens, expected {len(cache_ids)}")
            done[r] = Decoded(output, cache_ids, row_cache)
        if not still:
            break
        if len(still) < len(live):
            mask = keep_rows(cache, mask, still, trim=row_surgery)
            live = [live[i] for i in still]
        feed = torch.tensor([[tokens[i]] for i in still], device=device)
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
    return done



# Fed in one padded batch, a new problem's prompt would pad every other row (most need a
# single token) to its length: on CPU a batched prefill cost more per row than the same
# rows prefilled one by one, and the padding multiplied that.
PREFILL_ALONE_FROM = 8


def _prefill_long_rows_alone(model, rows: list[Row], *, device, keep_logits: dict) -> None:
    """Feed all but the last uncached token of each long row through its own cache, so
    the batch starts with short suffixes only."""
    import torch

    for row in rows:
        if len(row.ids) - row.reused - 1 >= PREFILL_ALONE_FROM:
            feed = torch.tensor([row.ids[row.reused : -1]], device=device)
            model(input_ids=feed, use_cache=True, **cache_argument(model, row.cache), **keep_logits)
            row.reused = len(row.ids) - 1
