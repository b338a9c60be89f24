"""A causal LM as a step `Generator`: its own decode loop with a per-session KV cache.

Each `session` (the problem being solved) keeps the token ids already in its cache.
The next call tokenizes the new full prefix, keeps the longest common token prefix
of the cache (so a rejected draft step is cropped away) and feeds only the rest.

`step_batch` continues several prefixes in one padded decode loop (one forward per
token for the whole batch); each row reuses and refreshes its session's cache just as
`step` does, so batched and single calls can interleave freely.

`score_continuation` (protocols.ContinuationScorer) reads the model's log-probabilities
of a given step in one forward through the same session cache: the cached prefix is not
fed again, and afterwards the cache holds the step and its separator too. A `step` on
the same prefix then crops that cache back to the prefix (an escalated draft step costs
no second prefill), and a next call after the accepted step feeds only what is new.
"""

from __future__ import annotations

from typing import Sequence

from arbitrage.config import ModelConfig
from arbitrage.protocols import ContinuationRequest, SamplingParams, StepOutput, StepRequest
from arbitrage.servers.prompt_limit import model_context_length
from arbitrage.servers.token_prompts import continuation_tokens, prefix_ids
from arbitrage.servers.transformers_backend.batch_cache import supports_row_surgery
from arbitrage.servers.transformers_backend.continuation import ScoredRow, score_rows
from arbitrage.servers.transformers_backend.decoding import Row, choose_token, decode_rows, seeded_rng
from arbitrage.servers.transformers_backend.kv_reuse import PrefixCacheStore
from arbitrage.servers.transformers_backend.loading import LoadedModel, accepts_logits_to_keep
from arbitrage.servers.transformers_backend.step_stop import StepStopper

__all__ = ["TransformersGenerator", "choose_token", "eos_token_ids"]


def eos_token_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(value if isinstance(value, (list, tuple, set)) else [value])
    return ids


def pad_token_id(tokenizer, eos_ids: set[int]) -> int:
    """Any id will do (padding is masked out); the tokenizer's pad, else an EOS."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return min(eos_ids) if eos_ids else 0


class TransformersGenerator:
    def __init__(self, loaded: LoadedModel, model_cfg: ModelConfig, separator: str, *, max_sessions: int = 64):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.prompt = model_cfg.prompt
        self.default_sampling = model_cfg.sampling.params()
        self.separator = separator
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.pad_id = pad_token_id(self.tokenizer, self.eos_ids)
        self.sessions = PrefixCacheStore(self.model.config, max_sessions)
        self._last_logits_only = accepts_logits_to_keep(self.model)
        self._row_surgery = supports_row_surgery(self.model.config)

    def step(
        self,
        problem: str,
        steps: Sequence[str],
        *,
        max_tokens: int,
        sampling: SamplingParams | None = None,
        session: str | None = None,
    ) -> StepOutput:
        return self.step_batch([StepRequest(problem, tuple(steps), max_tokens, sampling, session)])[0]

    def step_batch(self, requests: Sequence[StepRequest]) -> list[StepOutput]:
        """`step` for every request, decoded together; outputs in request order."""
        import torch

        if not requests:
            return []
        stoppers = [StepStopper(self.tokenizer, self.separator, self.eos_ids, r.max_tokens) for r in requests]
        prompts = [self._prefix_ids(r.problem, r.steps) for r in requests]
        samplings = [r.sampling or self.default_sampling for r in requests]
        # Without row surgery a batch cannot hold per-row caches: its rows prefill afresh.
        reuse = self._row_surgery or len(requests) == 1
        with self.loaded.lock, torch.inference_mode():
            rows = []
            for request, ids, stopper, sampling in zip(requests, prompts, stoppers, samplings):
                cache, reused, _ = self.sessions.take(request.session if reuse else None, ids)
                rows.append(Row(ids, cache, reused, stopper, sampling, seeded_rng(sampling, self.loaded.device)))
            decoded = decode_rows(
                self.model, rows, device=self.loaded.device, pad_id=self.pad_id,
                last_logits_only=self._last_logits_only, row_surgery=self._row_surgery,
            )
            for request, result in zip(requests, decoded):
                if result.cache is not None:
                    self.sessions.put(request.session, result.cache_ids, result.cache)
        return [result.output for result in decoded]

    def score_continuation(
        self, problem: str, steps: Sequence[str], text: str, *, session: str | None = None
    ) -> list[float]:
        """Log-probability of each token of `text` after `prompt(problem) + steps`, then of
        the separator after it (one entry, summed over its tokens); see protocols.ContinuationScorer."""
        return self.score_continuation_batch([ContinuationRequest(problem, tuple(steps), text, session)])[0]

    def score_continuation_batch(self, requests: Sequence[ContinuationRequest]) -> list[list[float]]:
        """`score_continuation` for every request, in shared forwards; outputs in request order."""
        import torch

        if not requests:
            return []
        plans = [continuation_tokens(self.tokenizer, self.prompt, r.problem, r.steps, r.text, self.separator)
                 for r in requests]
        reuse = self._row_surgery or len(requests) == 1
        with self.loaded.lock, torch.inference_mode():
            rows = []
            for request, plan in zip(requests, plans):
                # The logit of the step's first token comes from the prefix's last position.
                cache, reused, _ = self.sessions.take(
                    request.session if reuse else None, plan.ids, reuse_at_most=plan.prefix_len - 1
                )
                rows.append(ScoredRow(plan.ids, plan.scored, cache, reused))
            scored = score_rows(
                self.model, rows, device=self.loaded.device, pad_id=self.pad_id,
                last_logits_only=self._last_logits_only, keep_caches=reuse,
            )
            for request, row, (_, cache) in zip(requests, rows, scored):
                if cache is not None:
                    self.sessions.put(request.session, row.ids, cache)
        return [plan.fold(values) for plan, (values, _) in zip(plans, scored)]

    def end_session(self, session: str) -> None:
        """Release the session's cache without waiting for a forward in progress."""
        self.sessions.drop(session)

    def cached_tokens(self, session: str) -> int:
        """How many tokens the session's KV cache holds (0 when none)."""
        return self.sessions.cached_tokens(session)

    def prompt_tokens(self, problem: str) -> int:
        """Tokens of the rendered prompt of `problem`, before any step (servers/prompt_limit.py)."""
        return len(self._prefix_ids(problem, ()))

    def context_length(self) -> int | None:
        return model_context_length(self.model.config, self.tokenizer)

    def _prefix_ids(self, problem: str, steps: Sequence[str]) -> list[int]:
        ids = prefix_ids(self.tokenizer, self.prompt, problem, steps, self.separator)
        if not ids:
            raise ValueError("the rendered prompt is empty; nothing to condition on")
        return ids
