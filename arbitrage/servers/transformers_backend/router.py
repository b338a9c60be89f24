"""A sequence classifier as the `Router`: P(target writes a better step) from the
paper's annotated input text."""

from __future__ import annotations

from arbitrage.protocols import RouterQuery
from arbitrage.router.input_format import format_router_input
from arbitrage.servers.transformers_backend.loading import LoadedModel


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
    def __init__(self, loaded: LoadedModel, separator: str):
        self.loaded, self.separator = loaded, separator
        self.max_len = _max_input_len(loaded)

    def input_ids(self, query: RouterQuery) -> list[int]:
        text = format_router_input(query.problem, query.previous_steps, query.draft.text, separator=self.separator)
        ids = self.loaded.tokenizer(text, add_special_tokens=True)["input_ids"]
        if self.max_len and len(ids) > self.max_len:
            # The pending draft step is at the end; drop the oldest context, keep a BOS.
            bos = self.loaded.tokenizer.bos_token_id
            keep = [bos] if bos is not None and ids[0] == bos else []
            ids = keep + ids[len(ids) - self.max_len + len(keep) :]
        return ids

    def score(self, query: RouterQuery) -> float:
        import torch

        ids = torch.tensor([self.input_ids(query)], device=self.loaded.device)
        with self.loaded.lock, torch.inference_mode():
            logits = self.loaded.model(input_ids=ids).logits[0]
        return escalation_probability(logits)


def _max_input_len(loaded: LoadedModel) -> int | None:
    limits = [getattr(loaded.model.config, "max_position_embeddings", None), loaded.tokenizer.model_max_length]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else None
