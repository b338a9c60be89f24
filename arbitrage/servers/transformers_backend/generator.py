"""A causal LM as a step `Generator`: its own decode loop with a per-session KV cache.

Each `session` (the problem being solved) keeps the token ids already in its cache.
The next call tokenizes the new full prefix, keeps the longest common token prefix
of the cache (so a rejected draft step is cropped away) and feeds only the rest.
"""

from __future__ import annotations

from typing import Sequence

from arbitrage.config import ModelConfig
from arbitrage.protocols import SamplingParams, StepOutput
from arbitrage.servers.transformers_backend.kv_reuse import PrefixCacheStore
from arbitrage.servers.transformers_backend.loading import LoadedModel, accepts_logits_to_keep
from arbitrage.servers.transformers_backend.prompting import prefix_ids


def eos_token_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(value if isinstance(value, (list, tuple, set)) else [value])
    return ids


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


class TransformersGenerator:
    def __init__(self, loaded: LoadedModel, model_cfg: ModelConfig, separator: str, *, max_sessions: int = 64):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.prompt = model_cfg.prompt
        self.default_sampling = model_cfg.sampling.params()
        self.separator = separator
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.sessions = PrefixCacheStore(self.model.config, max_sessions)
        self._last_logits_only = accepts_logits_to_keep(self.model)

    def step(
        self,
        problem: str,
        steps: Sequence[str],
        *,
        max_tokens: int,
        sampling: SamplingParams | None = None,
        session: str | None = None,
    ) -> StepOutput:
        import torch

        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        sampling = sampling or self.default_sampling
        ids = prefix_ids(self.tokenizer, self.prompt, problem, steps, self.separator)
        if not ids:
            raise ValueError("the rendered prompt is empty; nothing to condition on")
        with self.loaded.lock, torch.inference_mode():
            cache, fed, _ = self.sessions.take(session, ids)
            output, cache_ids = self._decode(ids, cache, fed, max_tokens, sampling)
            self.sessions.put(session, cache_ids, cache)
        return output

    def end_session(self, session: str) -> None:
        with self.loaded.lock:
            self.sessions.drop(session)

    def cached_tokens(self, session: str) -> int:
        """How many tokens the session's KV cache holds (0 when none)."""
        with self.loaded.lock:
            return self.sessions.cached_tokens(session)

    def _decode(self, ids: list[int], cache, fed: int, max_tokens: int, sampling: SamplingParams):
        import torch

        device = self.loaded.device
        rng = None
        if not sampling.greedy and sampling.seed is not None:
            rng = torch.Generator(device=device).manual_seed(sampling.seed)
        extra = {"logits_to_keep": 1} if self._last_logits_only else {}
        feed = ids[fed:]
        generated: list[int] = []
        logprobs: list[float] = []
        text, finish = "", "length"
        while len(generated) < max_tokens:
            out = self.model(
                input_ids=torch.tensor([feed], device=device), past_key_values=cache, use_cache=True, **extra
            )
            logits = out.logits[0, -1].float()
            token = choose_token(logits, sampling, rng)
            logprobs.append(float(torch.log_softmax(logits, dim=-1)[token]))
            generated.append(token)
            if token in self.eos_ids:
                finish = "eos"
                text = self.tokenizer.decode(generated[:-1], skip_special_tokens=True)
                break
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if self.separator in text:
                finish = "separator"
                text = text.split(self.separator, 1)[0]
                break
            feed = [token]
        # The last chosen token was never fed, so the cache holds everything before it.
        cache_ids = ids + generated[:-1]
        return StepOutput(text=text, num_tokens=len(generated), finish_reason=finish, token_logprobs=logprobs), cache_ids
