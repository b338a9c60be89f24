"""PRM training with frozen bottom layers run once per example instead of once per step.

When only the top layers of a PRM train, the frozen bottom's output for a training
example never changes: it is computed once (no grad) and kept, and every training step
runs only the top layers from it. The loss is the full model's (a test checks that).
"""

from __future__ import annotations

import copy
from typing import NamedTuple, Sequence

import torch

from arbitrage.lab.prm_training import PRMExample, loss_from_hidden, pad_targets


class CachedExample(NamedTuple):
    example: PRMExample
    state: torch.Tensor  # [len(example.ids), hidden]: the input to the first trainable layer


def _view(prm, layers: slice, norm):
    """A LlamaModel over some of the PRM's own layers (shared modules, so training the view
    trains the PRM); only the layer list, the final norm and the layer count differ."""
    from transformers import LlamaModel

    config = copy.deepcopy(prm.config)
    config.num_hidden_layers = len(range(config.num_hidden_layers)[layers])
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[layers]
    with torch.device("meta"):  # every module is replaced by the PRM's below
        view = LlamaModel(config)
    view.embed_tokens = prm.model.embed_tokens
    view.rotary_emb = prm.model.rotary_emb
    view.layers = prm.model.layers[layers]
    view.norm = norm
    return view


def freeze_bottom(prm, n_frozen: int) -> None:
    """Only the top layers, the final norm and the value head train; the embedding and the
    bottom `n_frozen` layers keep the weights the PRM started from."""
    n_layers = prm.config.num_hidden_layers
    for name, param in prm.named_parameters():
        trainable = name.startswith("score") or name.startswith("model.norm") or any(
            name.startswith(f"model.layers.{i}.") for i in range(n_frozen, n_layers))
        param.requires_grad_(trainable)


@torch.no_grad()
def cache_bottom(prm, examples: Sequence[PRMExample], n_frozen: int, device, batch_size: int = 64,
                 progress=None) -> list[CachedExample]:
    bottom = _view(prm, slice(0, n_frozen), torch.nn.Identity())  # no final norm: the top applies it
    states: list[torch.Tensor | None] = [None] * len(examples)
    by_length = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    for start in range(0, len(by_length), batch_size):
        idx = by_length[start:start + batch_size]
        padded = pad_targets([examples[i] for i in idx], device)
        hidden = bottom(input_ids=padded.ids, attention_mask=padded.mask, use_cache=False).last_hidden_state
        for row, i in enumerate(idx):
            states[i] = hidden[row, : len(examples[i].ids)].float().cpu()
        if progress is not None:
            progress.update(len(idx))
    return [CachedExample(ex, state) for ex, state in zip(examples, states)]


class CachedPRMLoss:
    """`prm_loss` for `CachedExample`s: the top layers only, from the cached states."""

    def __init__(self, prm, n_frozen: int, dense_weight: float = 0.0, lm_weight: float = 0.0):
        self.prm = prm
        self.dense_weight, self.lm_weight = dense_weight, lm_weight
        self.top = _view(prm, slice(n_frozen, None), prm.model.norm)

    def __call__(self, model, batch: Sequence[CachedExample], device):
        targets = pad_targets([b.example for b in batch], device)
        states = torch.zeros((*targets.ids.shape, batch[0].state.shape[-1]))
        for row, b in enumerate(batch):
            states[row, : len(b.state)] = b.state
        states = states.to(device=device, dtype=self.top.norm.weight.dtype)
        hidden = self.top(inputs_embeds=states, attention_mask=targets.mask, use_cache=False).last_hidden_state
        return loss_from_hidden(self.prm, hidden, targets, self.dense_weight, self.lm_weight)
