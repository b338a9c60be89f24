"""What the lab PRM trains on and the loss it minimises.

Three terms, all on the PRM's own input (`bos + problem + "\\n"`, then each step + "\\n\\n"):

- step ends: BCE of the value at the last token of each step against the checker's verdict
  (the Skywork convention; the only value read at inference);
- dense (`dense_weight`): every token of a step's equation is labelled 1 before the first
  wrong character that `error_position.locate_error` finds and 0 from it on, so the model
  learns where a step breaks instead of only that it did;
- language modelling (`lm_weight`): next-token loss on the tokens of correct steps through
  the tied embedding, which keeps the target's arithmetic (that the PRM starts from) alive
  and teaches it the PRM's input format, which differs from the LM prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from arbitrage.lab.error_position import locate_error
from arbitrage.lab.generation import prm_example
from arbitrage.lab.task import SEPARATOR
from arbitrage.lab.tokenizer import PAD_ID


@dataclass(frozen=True)
class PRMRecipe:
    n_problems: int = 1000
    # Temperature 0 is greedy: the policies score greedy steps, so the PRM must see them.
    draft_temperatures: tuple[float, ...] = (0.0, 1.0)
    target_temperatures: tuple[float, ...] = (0.0, 1.0)
    # More problems written by the draft alone (at draft_temperatures), train[draft_only_start:]
    # on, in chunks of draft_only_chunk problems, each kept as it finishes. The draft writes most
    # wrong steps at a quarter of the target's cost; 0 keeps the shipped recipe (MODEL_CARD.md).
    # The start stays clear of the first n_problems and of the router's rows (train[1000:1600]).
    draft_only_problems: int = 0
    draft_only_start: int = 2000
    draft_only_chunk: int = 500
    steps: int = 500
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 30
    # Only the top N layers (and the value head) train; None trains the whole model. A full
    # fine-tune at lr 5e-4 without the LM term stalled at the constant predictor's loss
    # (0.48 after 200 steps): it unlearns the target's arithmetic that the PRM needs.
    train_top_layers: int | None = 4
    # Both extra terms are off in the shipped recipe: at this budget neither moved the held-out
    # AUROC (MODEL_CARD.md, "What did not help").
    dense_weight: float = 0.0
    lm_weight: float = 0.0

    def __post_init__(self):
        if self.draft_only_problems < 0 or self.draft_only_chunk < 1:
            raise ValueError(f"draft_only_problems must be >= 0 and draft_only_chunk >= 1, got "
                             f"{self.draft_only_problems} and {self.draft_only_chunk}")
        if self.draft_only_problems % self.draft_only_chunk:
            raise ValueError(f"draft_only_problems ({self.draft_only_problems}) must be a multiple of "
                             f"draft_only_chunk ({self.draft_only_chunk})")
        if self.draft_only_problems and self.draft_only_start < self.n_problems:
            raise ValueError(f"draft_only_start ({self.draft_only_start}) must not be below n_problems "
                             f"({self.n_problems}): the two samples would share problems")


class PRMExample(NamedTuple):
    ids: list[int]
    ends: list[int]  # last token of each step segment
    labels: list[int]  # checker verdict per step
    dense: list[tuple[int, int]]  # (position, label) inside equations
    lm_positions: list[int]  # tokens of correct steps, predicted from the token before


def _segment_start(step: str, end: int) -> int:
    return end - len(step + SEPARATOR) + 1


def dense_targets(problem: str, steps: Sequence[str], ends: Sequence[int]) -> list[tuple[int, int]]:
    """(token position, label) for every token of each locatable step from its equation to
    its end, the step end excluded: 1 before the first wrong character, 0 from it on
    (the character tokenizer makes character offsets token offsets)."""
    out = []
    for k, (step, end) in enumerate(zip(steps, ends)):
        where = locate_error(problem, steps[:k], step)
        if where is None:
            continue
        first = _segment_start(step, end)
        for pos in range(first + where.equation_start, end):
            out.append((pos, int(where.error is None or pos < first + where.error)))
    return out


def make_example(problem: str, steps: Sequence[str], labels: Sequence[int], *, dense: bool = True,
                 lm: bool = True) -> PRMExample:
    """`dense=False` / `lm=False` leave those targets empty, for a recipe with that term off."""
    ids, ends = prm_example(problem, steps)
    lm_positions = [p for step, end, y in zip(steps, ends, labels) if y
                    for p in range(_segment_start(step, end), end + 1)] if lm else []
    return PRMExample(ids, ends, list(labels), dense_targets(problem, steps, ends) if dense else [], lm_positions)


class PaddedTargets(NamedTuple):
    ids: torch.Tensor
    mask: torch.Tensor
    ends: torch.Tensor  # checker verdict at step ends, -1 elsewhere
    dense: torch.Tensor  # dense label inside equations, -1 elsewhere
    lm: torch.Tensor  # next token at LM positions, -100 elsewhere


def pad_targets(batch: Sequence[PRMExample], device) -> PaddedTargets:
    width = max(len(b.ids) for b in batch)
    ids = torch.full((len(batch), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    ends = torch.full((len(batch), width), -1.0)
    dense = torch.full((len(batch), width), -1.0)
    lm = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, ex in enumerate(batch):
        ids[i, : len(ex.ids)] = torch.tensor(ex.ids)
        mask[i, : len(ex.ids)] = 1
        for e, y in zip(ex.ends, ex.labels):
            ends[i, e] = float(y)
        for pos, y in ex.dense:
            dense[i, pos] = float(y)
        for pos in ex.lm_positions:
            lm[i, pos] = ex.ids[pos]
    return PaddedTargets(*(t.to(device) for t in (ids, mask, ends, dense, lm)))


def loss_from_hidden(model, hidden: torch.Tensor, targets: PaddedTargets, dense_weight: float = 0.0,
                     lm_weight: float = 0.0):
    """The loss terms read off the backbone's last hidden state (after the final norm)."""
    values = model.score(model.dropout(hidden))[..., 0].float()  # as the model's own forward does
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    ends, dense, lm = targets.ends, targets.dense, targets.lm
    loss = bce(values[ends >= 0], ends[ends >= 0])
    if dense_weight and bool((dense >= 0).any()):
        loss = loss + dense_weight * bce(values[dense >= 0], dense[dense >= 0])
    if lm_weight and bool((lm >= 0).any()):
        logits = torch.nn.functional.linear(hidden[:, :-1], model.model.embed_tokens.weight).float()
        loss = loss + lm_weight * torch.nn.functional.cross_entropy(logits.flatten(0, 1), lm[:, 1:].flatten())
    return loss


def prm_loss(model, batch: Sequence[PRMExample], device, dense_weight: float = 0.0, lm_weight: float = 0.0):
    targets = pad_targets(batch, device)
    hidden = model.model(input_ids=targets.ids, attention_mask=targets.mask).last_hidden_state
    return loss_from_hidden(model, hidden, targets, dense_weight, lm_weight)
