"""Generator, PRM and router over an OpenAI-compatible model server (`backend: openai`).

Each holds the dialect of its server (`models.<role>.api`, servers/wire/), which writes
every request and reads every reply; these classes render the models' inputs and send.
"""

from __future__ import annotations

import logging
from typing import Sequence

from arbitrage.config import Config, ConfigError, ModelConfig
from arbitrage.protocols import ContinuationRequest, RouterQuery, SamplingParams, StepOutput, StepRequest
from arbitrage.servers.http_client import BackendError, JsonHttpClient
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.prompting import PrefixRenderer, chat_messages, load_tokenizer
from arbitrage.servers.token_prompts import continuation_tokens
from arbitrage.servers.wire import dialect_for

log = logging.getLogger(__name__)


class HttpGenerator:
    def __init__(self, model_cfg: ModelConfig, separator: str, *, client: JsonHttpClient | None = None, where: str = "models"):
        self.model_cfg = model_cfg
        self.client = client or JsonHttpClient.for_model(model_cfg)
        self.dialect = dialect_for(model_cfg, separator)
        self.default_sampling = model_cfg.sampling.params()
        tokenizer = None
        # The server's template, continued over chat completions (a server that renders
        # chat itself needs neither).
        self.chat_on_server = model_cfg.prompt.chat_template == "server" and not self.dialect.renders_chat
        if self.chat_on_server and not self.dialect.continues_chat:
            raise ConfigError(
                f"{where}.prompt.chat_template: 'server' is not supported for a generator over api "
                f"'{model_cfg.api}' (it has no documented way to continue a partial assistant turn; "
                f"vllm and sglang do); set {where}.tokenizer to the served model's tokenizer directory or .gguf file, "
                f"or {where}.gguf_file to the GGUF in {where}.path"
            )
        if model_cfg.prompt.format == "chat" and not self.dialect.renders_chat and not self.chat_on_server:
            tokenizer = load_tokenizer(model_cfg, where)
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError(f"{where}: prompt.format is 'chat' but the tokenizer of {model_cfg.tokenizer or model_cfg.path!r} has no chat template")
        self.renderer = PrefixRenderer(model_cfg.prompt, separator, tokenizer)
        self.separator, self.where = separator, where
        self._tokenizer = tokenizer

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
        request = StepRequest(problem, tuple(steps), max_tokens, sampling or self.default_sampling, session)
        if self.chat_on_server:
            messages = chat_messages(self.model_cfg.prompt, problem, steps, self.renderer.separator)
            return self.dialect.chat_step(messages, request).send(self.client)
        return self.dialect.step(self.renderer.render(problem, steps), request).send(self.client)

    def score_continuation(
        self, problem: str, steps: Sequence[str], text: str, *, session: str | None = None
    ) -> list[float]:
        """protocols.ContinuationScorer over HTTP. sglang and vLLM are sent the token ids the
        in-process model would be fed, so the client needs the served model's tokenizer
        (`tokenizer`, else `path`); our server takes the structured call."""
        if not self.dialect.scores_continuation:
            raise ValueError(f"{self.where}: api '{self.dialect.name}' cannot score a continuation")
        request = ContinuationRequest(problem, tuple(steps), text, session)
        tokens = None
        if self.dialect.continuation_wants_tokens:
            tokens = continuation_tokens(self._served_tokenizer(), self.model_cfg.prompt, problem, steps, text,
                                         self.separator)
        return self.dialect.score_continuation(request, tokens).send(self.client)

    def _served_tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_cfg, self.where)
        return self._tokenizer

    def end_session(self, session: str) -> None:
        call = self.dialect.end_session(session)
        if call is None:
            return
        try:
            call.send(self.client)
        except BackendError as error:
            log.warning("could not release session %s: %s", session, error)


class HttpPRM:
    def __init__(self, model_cfg: ModelConfig, separator: str, *, client: JsonHttpClient | None = None, where: str = "models.prm"):
        self.dialect = dialect_for(model_cfg, separator)
        if model_cfg.prm_style not in self.dialect.prm_styles:
            raise ConfigError(
                f"{where}: prm_style '{model_cfg.prm_style}' over api '{model_cfg.api}' is not supported "
                f"(it scores: {', '.join(sorted(self.dialect.prm_styles))}); serve the PRM with `arbitrage serve` "
                "and set api: arbitrage, or use backend: transformers"
            )
        self.model_cfg = model_cfg
        self.client = client or JsonHttpClient.for_model(model_cfg)
        tokenizer = load_tokenizer(model_cfg, where) if self.dialect.prm_wants_tokenizer(model_cfg) else None
        self.input = PrmInput(model_cfg.prm_style, separator, system=model_cfg.prompt.system, tokenizer=tokenizer,
                              chat_on_server=model_cfg.prompt.chat_template == "server")

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        steps = list(steps)
        if not steps:
            return []
        return self.dialect.prm_rewards(self.input, problem, steps, last_only=False).send(self.client)

    def score_last(self, problem: str, steps: Sequence[str]) -> float:
        """The newest step's reward alone (one sequence for sglang, `last_only` for our server)."""
        steps = list(steps)
        if not steps:
            raise ValueError("score_last needs at least one step")
        return self.dialect.prm_rewards(self.input, problem, steps, last_only=True).send(self.client)[0]


class HttpRouter:
    def __init__(self, model_cfg: ModelConfig, separator: str, *, client: JsonHttpClient | None = None, where: str = "models.router"):
        if model_cfg.router_kind != "classifier":
            raise ConfigError(
                f"{where}: router_kind '{model_cfg.router_kind}' needs no model server; use backend: transformers"
            )
        self.dialect = dialect_for(model_cfg, separator)
        if not self.dialect.scores_router:
            raise ConfigError(
                f"{where}: api '{model_cfg.api}' has no router scoring endpoint; serve the router with "
                "`arbitrage serve` and set api: arbitrage, or use backend: transformers"
            )
        self.model_cfg = model_cfg
        self.client = client or JsonHttpClient.for_model(model_cfg)

    def score(self, query: RouterQuery) -> float:
        return self.dialect.router_score(query).send(self.client)


def load_generator(model_cfg: ModelConfig, config: Config) -> HttpGenerator:
    return HttpGenerator(model_cfg, config.separator, client=_client(model_cfg, config), where=_where(model_cfg, config))


def load_prm(model_cfg: ModelConfig, config: Config) -> HttpPRM:
    return HttpPRM(model_cfg, config.separator, client=_client(model_cfg, config), where=_where(model_cfg, config))


def load_router(model_cfg: ModelConfig, config: Config) -> HttpRouter:
    return HttpRouter(model_cfg, config.separator, client=_client(model_cfg, config), where=_where(model_cfg, config))


def _client(model_cfg: ModelConfig, config: Config) -> JsonHttpClient:
    return JsonHttpClient.for_model(model_cfg, wait_s=config.servers.wait_s)


def _where(model_cfg: ModelConfig, config: Config) -> str:
    for role in ("draft", "target", "prm", "router"):
        if config.models.get(role) is model_cfg:
            return f"models.{role}"
    return "models"
