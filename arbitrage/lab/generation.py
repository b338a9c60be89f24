"""Batched generation and PRM scoring on the lab models (used by training and eval).

`generate_solutions` writes whole solutions (until EOS); `generate_steps` writes one
step per prefix, stopping at the separator "\\n\\n" or EOS, like the backend's
`Generator.step`. Greedy generation of a whole solution equals step-by-step greedy
generation with the character tokenizer, since each step is continued from the
same characters. `prm_step_rewards` scores steps Skywork-style: input
`bos + problem + "\\n"`, then each step + "\\n\\n"; reward = sigmoid(logit at the
last token of each step segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from arbitrage.lab.task import SEPARATOR, format_prompt
from arbitrage.lab.tokenizer import BOS_ID, EOS_ID, NEWLINE_ID, PAD_ID, decode, encode


@dataclass
class Step:
    text: str
    finish_reason: str  # separator | eos | length
    num_tokens: int


def _left_pad(seqs: Sequence[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


class _StopAtSeparator:
    """Per-sequence stop once the generated part ends with "\\n\\n"."""

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        gen = input_ids[:, self.prompt_len:]
        if gen.shape[1] < 2:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return (gen[:, -1] == NEWLINE_ID) & (gen[:, -2] == NEWLINE_ID)


@torch.no_grad()
def _generate(model, prompts: Sequence[list[int]], max_new_tokens: int, temperature: float,
              stop_at_separator: bool, batch_size: int, generator_seed: int | None = None,
              cache: str = "static") -> list[list[int]]:
    """`cache` is the KV cache: "static" (preallocated to the longest sequence) or "dynamic".
    Both give the same tokens; the dynamic cache copies itself at every token, which made
    whole-solution sampling about 3x slower (`benchmarks/lab_sampling.py`)."""
    from transformers import StoppingCriteriaList

    device = next(model.parameters()).device
    out: list[list[int]] = [None] * len(prompts)  # type: ignore[list-item]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = _left_pad([prompts[i] for i in idx], device)
        kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
                      cache_implementation=cache)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(do_sample=False)
        if stop_at_separator:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopAtSeparator(ids.shape[1])])
        gen = model.generate(input_ids=ids, attention_mask=mask, **kwargs)[:, ids.shape[1]:].tolist()
        for i, row in zip(idx, gen):
            # cut at EOS (keep it as a marker) and drop padding after it
            if EOS_ID in row:
                row = row[: row.index(EOS_ID) + 1]
            out[i] = [t for t in row if t != PAD_ID]
    return out


def prompt_ids(problem: str, steps: Sequence[str] = ()) -> list[int]:
    text = format_prompt(problem) + "".join(s + SEPARATOR for s in steps)
    return [BOS_ID] + encode(text)


def generate_solutions(model, problems: Sequence[str], *, max_new_tokens: int = 300, temperature: float = 0.0,
                       batch_size: int = 256, seed: int | None = None, cache: str = "static") -> list[str]:
    """Whole solutions (text up to EOS, without it)."""
    rows = _generate(model, [prompt_ids(p) for p in problems], max_new_tokens, temperature, False, batch_size, seed,
                     cache)
    return [decode(r) for r in rows]


def split_steps(solution: str, max_steps: int = 12) -> list[str]:
    steps = [s for s in solution.split(SEPARATOR)]
    while steps and not steps[-1].strip():
        steps.pop()
    return steps[:max_steps]


def generate_steps(model, problems: Sequence[str], prefixes: Sequence[Sequence[str]], *, max_new_tokens: int = 120,
                   temperature: float = 0.0, batch_size: int = 256, cache: str = "static") -> list[Step]:
    """The next step for each (problem, accepted steps) pair."""
    prompts = [prompt_ids(p, s) for p, s in zip(problems, prefixes)]
    rows = _generate(model, prompts, max_new_tokens, temperature, True, batch_size, cache=cache)
    steps = []
    for row in rows:
        if row and row[-1] == EOS_ID:
            steps.append(Step(decode(row[:-1]), "eos", len(row)))
        elif len(row) >= 2 and row[-1] == NEWLINE_ID and row[-2] == NEWLINE_ID:
            steps.append(Step(decode(row[:-2]), "separator", len(row)))
        else:
            steps.append(Step(decode(row), "length", len(row)))
    return steps


def prm_example(problem: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """PRM input ids and the index of the last token of each step segment."""
    ids = [BOS_ID] + encode(problem + "\n")
    ends = []
    for s in steps:
        ids += encode(s + SEPARATOR)
        ends.append(len(ids) - 1)
    return ids, ends


@torch.no_grad()
def prm_step_rewards(prm, items: Sequence[tuple[str, Sequence[str]]], batch_size: int = 128) -> list[list[float]]:
    """Reward in [0, 1] for every step of every (problem, steps) item."""
    device = next(prm.parameters()).device
    examples = [prm_example(p, s) for p, s in items]
    out: list[list[float]] = [None] * len(items)  # type: ignore[list-item]
    order = sorted(range(len(items)), key=lambda i: len(examples[i][0]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(examples[i][0]) for i in idx)
        ids = torch.full((len(idx), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            seq = examples[i][0]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        logits = prm(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[..., 0].float()
        probs = torch.sigmoid(logits).cpu()
        for row, i in enumerate(idx):
            out[i] = [float(probs[row, e]) for e in examples[i][1]]
    return out
