"""Generator, PRM and router over an OpenAI-compatible model server (`backend: openai`).

`models.<role>.api` names the server at `base_url` and so the wire format:

- generation, every api: `POST /v1/completions` with the rendered prefix, `stop=[separator]`,
  `max_tokens`, sampling, `logprobs=1`. `api: arbitrage` (our `arbitrage serve`) also
  receives the structured request (`arbitrage: {problem, steps, session}`), so it runs
  exactly the in-process `Generator.step`; sglang ignores unknown request fields and
  vLLM logs and ignores them, but we only send it to our own server.
- PRM and router scoring:
  - `sglang`: `POST /classify` (reward models launched with --is-embedding; sglang
    python/sglang/srt/entrypoints/http_server.py `classify_request`). It pools one value
    per sequence at the last token, so `score_last` (all the graph needs) sends the one
    prefix ending at the newest step, and `score` sends one such prefix per step in one
    batched request (sglang's radix cache shares the prefixes).
  - `vllm`: `POST /pooling` (vllm/entrypoints/pooling/pooling/api_router.py), the whole
    solution in one input; the reply holds one row per step tag (STEP pooling) or per
    token (ALL pooling, as with the Skywork PRM plugin), and in the per-token case we
    read the rows at each step's last token, which needs the tokenizer client side.
    We ask for raw head outputs (`use_activation: false`) and apply the activation here.
  - `arbitrage`: `POST /v1/arbitrage/prm` and `/v1/arbitrage/router` with structured
    inputs (see servers/http_server.py).
"""

from __future__ import annotations

import logging
from typing import Sequence

from arbitrage.config import Config, ConfigError, ModelConfig
from arbitrage.protocols import RouterQuery, SamplingParams, StepOutput
from arbitrage.servers.router_input import format_router_input
from arbitrage.servers.http_client import BackendError, JsonHttpClient
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.prompting import PrefixRenderer, load_tokenizer
from arbitrage.servers.wire import (
    field,
    parse_completion,
    parse_sglang_classify,
    parse_vllm_pooling,
    probability,
    unit_interval,
)

log = logging.getLogger(__name__)


def _served_name(model_cfg: ModelConfig) -> str:
    return model_cfg.model or model_cfg.path


class HttpGenerator:
    def __init__(self, model_cfg: ModelConfig, separator: str, *, client: JsonHttpClient | None = None, where: str = "models"):
        self.model_cfg = model_cfg
        self.separator = separator
        self.client = client or JsonHttpClient.for_model(model_cfg)
        self.api = model_cfg.api
        self.default_sampling = model_cfg.sampling.params()
        tokenizer = None
        # Our own server renders chat prompts itself from the structured request.
        if model_cfg.prompt.format == "chat" and self.api != "arbitrage":
            tokenizer = load_tokenizer(model_cfg, where)
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError(f"{where}: prompt.format is 'chat' but the tokenizer of {model_cfg.tokenizer or model_cfg.path!r} has no chat template")
        self.renderer = PrefixRenderer(model_cfg.prompt, separator, tokenizer)

    def step(
        self,
        problem: str,
        steps: Sequence[str],
        *,
        max_tokens: int,
        sampling: SamplingParams | None = None,
        session: str | None = None,
    ) -> StepOutput:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        sampling = sampling or self.default_sampling
        payload = {
            "model": _served_name(self.model_cfg),
            "prompt": self.renderer.render(problem, steps),
            "max_tokens": max_tokens,
            "stop": [self.separator],
            "logprobs": 1,
            "n": 1,
            "stream": False,
            **sampling.to_openai_kwargs(),
        }
        if self.api == "arbitrage":
            payload["arbitrage"] = {"problem": problem, "steps": list(steps), "session": session}
        reply = self.client.post_json("/v1/completions", payload)
        return parse_completion(reply, self.separator, self.client.url("/v1/completions"))

    def end_session(self, session: str) -> None:
        # sglang and vLLM keep shared prefixes in their prefix caches without being asked.
        if self.api != "arbitrage":
            return
        try:
            self.client.post_json("/v1/arbitrage/end_session", {"session": session}, retries=0)
        except BackendError as error:
            log.warning("could not release session %s: %s", session, error)


class HttpPRM:
    def __init__(self, model_cfg: ModelConfig, separator: str, *, client: JsonHttpClient | None = None, where: str = "models.prm"):
        if model_cfg.prm_style == "judge" and model_cfg.api != "arbitrage":
            raise ConfigError(
                f"{where}: prm_style 'judge' over api '{model_cfg.api}' is not supported; serve the judge "
                "with `arbitrage serve` and set api: arbitrage, or use backend: transformers"
            )
        self.model_cfg = model_cfg
        self.separator = separator
        self.client = client or JsonHttpClient.for_model(model_cfg)
        self.api = model_cfg.api
        self.tokenizer = None
        if model_cfg.tokenizer or (self.api == "vllm" and model_cfg.prm_style == "skywork"):
            # Per-token rewards (vLLM ALL pooling, the Skywork plugin) are only usable with
            # step-end positions; a given tokenizer also renders Qwen's chat layout exactly.
            self.tokenizer = load_tokenizer(model_cfg, where)
        self.input = PrmInput(model_cfg.prm_style, separator, system=model_cfg.prompt.system, tokenizer=self.tokenizer)

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        steps = list(steps)
        if not steps:
            return []
        if self.api == "arbitrage":
            return self._score_arbitrage(problem, steps)
        if self.api == "vllm":
            return self._score_vllm(problem, steps)
        return self._score_sglang(problem, steps)

    def score_last(self, problem: str, steps: Sequence[str]) -> float:
        """The newest step's reward alone: one sequence for sglang, `last_only` for our server."""
        steps = list(steps)
        if not steps:
            raise ValueError("score_last needs at least one step")
        if self.api == "arbitrage":
            return self._score_arbitrage(problem, steps, last_only=True)[0]
        if self.api == "vllm":
            return self._score_vllm(problem, steps)[-1]
        return self._score_sglang(problem, steps, first=len(steps) - 1)[0]

    def _score_sglang(self, problem: str, steps: list[str], first: int = 0) -> list[float]:
        """Rewards of steps[first:], one text per step: the prefix ending at that step."""
        texts = [self.input.last_token_text(problem, steps[: i + 1]) for i in range(first, len(steps))]
        # A one-element list trips sglang's embedding path (see its warmup); send a string.
        payload = {"model": _served_name(self.model_cfg), "text": texts[0] if len(texts) == 1 else texts}
        url = self.client.url("/classify")
        rows = parse_sglang_classify(self.client.post_json("/classify", payload), len(texts), url)
        return [probability(row, f"result {i} 'embedding'", url) for i, row in enumerate(rows)]

    def _score_vllm(self, problem: str, steps: list[str]) -> list[float]:
        ends = None
        if self.tokenizer is not None:
            model_input, ends = self.input.token_ids(problem, steps)
        else:
            model_input = self.input.last_token_text(problem, steps)
        payload = {"model": _served_name(self.model_cfg), "input": model_input, "use_activation": False}
        url = self.client.url("/pooling")
        (rows,) = parse_vllm_pooling(self.client.post_json("/pooling", payload), 1, url)
        if len(rows) == len(steps) and (ends is None or len(rows) != len(model_input)):
            picked = rows  # STEP pooling: one row per step tag
        elif ends is not None and len(rows) == len(model_input):
            picked = [rows[end] for end in ends]
        else:
            hint = "" if ends is not None else "; per-token rewards need models.prm.tokenizer to locate step ends"
            raise BackendError(
                f"{url}: reply field 'data.0.data' has {len(rows)} rows for {len(steps)} steps"
                + (f" and {len(model_input)} tokens" if ends is not None else "")
                + hint
            )
        return [probability(row, f"the row of step {i}", url) for i, row in enumerate(picked)]

    def _score_arbitrage(self, problem: str, steps: list[str], *, last_only: bool = False) -> list[float]:
        payload = {"model": _served_name(self.model_cfg), "input": [{"problem": problem, "steps": steps}]}
        if last_only:
            payload["last_only"] = True
        url = self.client.url("/v1/arbitrage/prm")
        reply = self.client.post_json("/v1/arbitrage/prm", payload)
        rewards = field(reply, "data.0.rewards", url, list)
        expected = 1 if last_only else len(steps)
        if len(rewards) != expected:
            raise BackendError(f"{url}: reply field 'data.0.rewards' has {len(rewards)} rewards for {expected} steps")
        return [unit_interval(value, f"data.0.rewards.{i}", url) for i, value in enumerate(rewards)]


class HttpRouter:
    def __init__(self, model_cfg: ModelConfig, separator: str, *, client: JsonHttpClient | None = None, where: str = "models.router"):
        if model_cfg.router_kind != "classifier":
            raise ConfigError(
                f"{where}: router_kind '{model_cfg.router_kind}' needs no model server; use backend: transformers"
            )
        self.model_cfg = model_cfg
        self.separator = separator
        self.client = client or JsonHttpClient.for_model(model_cfg)
        self.api = model_cfg.api

    def score(self, query: RouterQuery) -> float:
        if self.api == "arbitrage":
            payload = {"model": _served_name(self.model_cfg), "input": [router_query_json(query)]}
            url = self.client.url("/v1/arbitrage/router")
            reply = self.client.post_json("/v1/arbitrage/router", payload)
            return unit_interval(field(reply, "data.0.score", url), "data.0.score", url)
        text = format_router_input(query.problem, query.previous_steps, query.draft.text, separator=self.separator)
        if self.api == "vllm":
            payload = {"model": _served_name(self.model_cfg), "input": text, "use_activation": False}
            url = self.client.url("/pooling")
            (rows,) = parse_vllm_pooling(self.client.post_json("/pooling", payload), 1, url)
            return probability(rows[-1], "'data.0.data'", url)
        url = self.client.url("/classify")
        (row,) = parse_sglang_classify(self.client.post_json("/classify", {"model": _served_name(self.model_cfg), "text": text}), 1, url)
        return probability(row, "'embedding'", url)


def router_query_json(query: RouterQuery) -> dict:
    draft = query.draft
    return {
        "problem": query.problem,
        "previous_steps": [{"text": step.text, "source": step.source} for step in query.previous_steps],
        "draft": {
            "text": draft.text,
            "num_tokens": draft.num_tokens,
            "finish_reason": draft.finish_reason,
            "token_logprobs": list(draft.token_logprobs),
        },
    }


def load_generator(model_cfg: ModelConfig, config: Config) -> HttpGenerator:
    return HttpGenerator(model_cfg, config.separator, where=_where(model_cfg, config))


def load_prm(model_cfg: ModelConfig, config: Config) -> HttpPRM:
    return HttpPRM(model_cfg, config.separator, where=_where(model_cfg, config))


def load_router(model_cfg: ModelConfig, config: Config) -> HttpRouter:
    return HttpRouter(model_cfg, config.separator, where=_where(model_cfg, config))


def _where(model_cfg: ModelConfig, config: Config) -> str:
    for role in ("draft", "target", "prm", "router"):
        if config.models.get(role) is model_cfg:
            return f"models.{role}"
    return "models"
