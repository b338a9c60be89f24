"""A sequence classifier as the `Router`: P(target writes a better step) from the
paper's annotated input text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from arbitrage.protocols import RouterQuery
from arbitrage.servers.router_input import format_router_input
from arbitrage.servers.transformers_backend.batch_cache import (
    extract_row, length_groups, padded_forward, start_batch, supports_row_surgery,
)
from arbitrage.servers.transformers_backend.kv_reuse import PrefixCacheStore
from arbitrage.servers.transformers_backend.loading import LoadedModel

# Written beside a trained router's weights (arbitrage/router/train.py): its training options.
ROUTER_CONFIG_FILE = "router_config.json"


def router_annotates(model_dir: str | Path) -> bool:
    """Whether a saved router was trained on annotated input (True when it records nothing)."""
    path = Path(model_dir) / ROUTER_CONFIG_FILE
    return json.loads(path.read_text()).get("annotate", True) if path.exists() else True


def escalation_probability(logits) -> float:
    """One label: sigmoid. Two: softmax index 1. More (ordinal bins of the advantage,
    lowest first): the softmax mass of the classes strictly above the middle class,
    i.e. indices > (K - 1) / 2."""
    import torch

    logits = logits.float()
    k = logits.shape[-1]
    if k == 1:
        return float(torch.sigmoid(logits[0]))
    probs = torch.softmax(logits, dim=-1)
    if k == 2:
        return float(probs[1])
    return float(probs[(k + 1) // 2 :].sum())


class ClassifierRouter:
    """Keeps a KV cache per problem: from one step to the next the router input only
    grows by the committed step and the new draft, so each call feeds just those tokens.

    `annotate` must match training (a router trained without the Model 0:/Model 1:
    tags records annotate=false in its router_config.json)."""

    def __init__(self, loaded: LoadedModel, separator: str, *, annotate: bool = True, cached_problems: int = 64):
        self.loaded, self.separator, self.annotate = loaded, separator, annotate
        self.max_len = _max_input_len(loaded)
        self.prefixes = PrefixCacheStore(loaded.model.config, cached_problems)
        self._row_surgery = supports_row_surgery(loaded.model.config)
        self._pad_id = loaded.model.config.get_text_config().pad_token_id

    def input_ids(self, query: RouterQuery) -> list[int]:
        text = format_router_input(
            query.problem, query.previous_steps, query.draft.text, separator=self.separator, annotate=self.annotate
        )
        ids = self.loaded.tokenizer(text, add_special_tokens=True)["input_ids"]
        if self.max_len and len(ids) > self.max_len:
            # The pending draft step is at the end; drop the oldest context, keep a BOS.
            bos = self.loaded.tokenizer.bos_token_id
            keep = [bos] if bos is not None and ids[0] == bos else []
            ids = keep + ids[len(ids) - self.max_len + len(keep) :]
        return ids

    def score(self, query: RouterQuery) -> float:
        return self.score_batch([query])[0]

    def score_batch(self, queries: Sequence[RouterQuery]) -> list[float]:
        """`score` for every query, each reusing its problem's cache; queries whose uncached
        parts are of similar length share one left-padded forward."""
        import torch

        if not queries:
            return []
        if len(queries) > 1 and self._pad_id is None:
            # The classifier finds each row's last token by the pad id; without one it refuses batches.
            return [self.score(query) for query in queries]
        ids_list = [self.input_ids(query) for query in queries]
        reuse = self._row_surgery or len(queries) == 1
        config = self.loaded.model.config
        scores: list[float] = [0.0] * len(queries)
        with self.loaded.lock, torch.inference_mode():
            taken = [self.prefixes.take(q.problem if reuse else None, ids) for q, ids in zip(queries, ids_list)]
            for group in length_groups([len(ids) - n for ids, (_, n, _) in zip(ids_list, taken)]):
                cache, feed, mask = start_batch(
                    config, [taken[r][0] for r in group], [taken[r][1] for r in group],
                    [ids_list[r][taken[r][1] :] for r in group],
                    pad_id=self._pad_id if self._pad_id is not None else 0, device=self.loaded.device,
                )
                # The classifier pools the last non-pad token of each row: its input's last token.
                logits = padded_forward(self.loaded.model, feed, mask, cache).logits
                for row, r in enumerate(group):
                    scores[r] = escalation_probability(logits[row])
                    if reuse:
                        self.prefixes.put(queries[r].problem, ids_list[r], extract_row(config, cache, row, mask[row]))
        return scores


def _max_input_len(loaded: LoadedModel) -> int | None:
    limits = [getattr(loaded.model.config, "max_position_embeddings", None), loaded.tokenizer.model_max_length]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else None
