"""`step_batch` for the in-process transformers generator: many problems' next steps in
one padded decode loop, so `arbitrage serve` turns concurrent requests into one forward
pass per token.

Prefixes are left-padded, so every row's next token sits in the last column; each row
keeps its own sampling (greedy, or its own seeded generator), token cap and stop checks,
exactly as `TransformersGenerator._decode` does for one row. Batched rows do not use the
per-session KV caches (each prefix is prefilled again); a batch of one goes through the
generator's own cached `step`. Padding changes float summation order, so logprobs may
differ from the single-row path in the last digits.
"""

from __future__ import annotations

from typing import Sequence

from arbitrage.protocols import SamplingParams, StepOutput
from arbitrage.servers.batching import StepRequest


class BatchedTransformersGenerator:
    """Wraps a `TransformersGenerator`; `step`/`end_session` pass through unchanged."""

    def __init__(self, generator):
        self.generator = generator
        self.loaded = generator.loaded

    def step(self, problem, steps, *, max_tokens, sampling=None, session=None) -> StepOutput:
        return self.generator.step(problem, steps, max_tokens=max_tokens, sampling=sampling, session=session)

    def end_session(self, session: str) -> None:
        self.generator.end_session(session)

    def step_batch(self, requests: Sequence[StepRequest]) -> list[StepOutput]:
        import torch
        from transformers import DynamicCache

        from arbitrage.servers.transformers_backend.generator import choose_token
        from arbitrage.servers.transformers_backend.loading import accepts_logits_to_keep
        from arbitrage.servers.transformers_backend.prompting import prefix_ids

        gen = self.generator
        tokenizer, model, device = gen.tokenizer, gen.model, self.loaded.device
        for request in requests:
            if request.max_tokens < 1:
                raise ValueError(f"max_tokens must be at least 1, got {request.max_tokens}")
        prompts = [prefix_ids(tokenizer, gen.prompt, r.problem, list(r.steps), gen.separator) for r in requests]
        if any(not ids for ids in prompts):
            raise ValueError("the rendered prompt is empty; nothing to condition on")
        samplings = [r.sampling or gen.default_sampling for r in requests]
        rngs = [_rng(s, device) for s in samplings]
        pad = _pad_id(tokenizer, gen.eos_ids)
        width = max(len(ids) for ids in prompts)
        rows = len(prompts)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
        extra = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}

        generated: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        results: list[StepOutput | None] = [None] * rows
        cache = DynamicCache(config=model.config)
        feed = input_ids
        with self.loaded.lock, torch.inference_mode():
            while any(result is None for result in results):
                positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -feed.shape[1] :]
                out = model(
                    input_ids=feed, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True, **extra
                )
                logits = out.logits[:, -1].float()
                next_tokens = []
                for row in range(rows):
                    if results[row] is not None:
                        next_tokens.append(pad)
                        continue
                    token = choose_token(logits[row], samplings[row], rngs[row])
                    logprobs[row].append(float(torch.log_softmax(logits[row], dim=-1)[token]))
                    generated[row].append(token)
                    next_tokens.append(token)
                    results[row] = _finished(gen, generated[row], logprobs[row], requests[row].max_tokens)
                feed = torch.tensor([[token] for token in next_tokens], device=device)
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=device)], dim=1)
        return results


def _finished(gen, generated: list[int], logprobs: list[float], max_tokens: int) -> StepOutput | None:
    """The row's StepOutput once it stopped (same rules as the single-row decode), else None."""
    token = generated[-1]
    if token in gen.eos_ids:
        text = gen.tokenizer.decode(generated[:-1], skip_special_tokens=True)
        return StepOutput(text, len(generated), "eos", list(logprobs))
    text = gen.tokenizer.decode(generated, skip_special_tokens=True)
    if gen.separator in text:
        return StepOutput(text.split(gen.separator, 1)[0], len(generated), "separator", list(logprobs))
    if len(generated) >= max_tokens:
        return StepOutput(text, len(generated), "length", list(logprobs))
    return None


def _rng(sampling: SamplingParams, device):
    import torch

    if sampling.greedy or sampling.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(sampling.seed)


def _pad_id(tokenizer, eos_ids: set[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return min(eos_ids) if eos_ids else 0


def with_batched_steps(model):
    """The served object: a transformers generator gains `step_batch`; anything else as is."""
    from arbitrage.servers.transformers_backend.generator import TransformersGenerator

    return BatchedTransformersGenerator(model) if isinstance(model, TransformersGenerator) else model
