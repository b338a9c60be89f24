"""What every dialect is: the base class the HTTP clients (servers/openai_backend.py)
hold, and `Call`, the one request plus the reading of its reply that each of its
methods returns. Generation is OpenAI completions on every server, so the base speaks
it; scoring is each server's own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, Sequence, TypeVar

from arbitrage.config import ModelConfig
from arbitrage.protocols import RouterQuery, StepOutput, StepRequest
from arbitrage.servers.http_client import JsonHttpClient
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.wire.completions import COMPLETIONS_PATH, decode_completion_reply, encode_completion_request

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One POST: its path and body, and `read(reply JSON, url) -> value`."""

    path: str
    body: dict
    read: Callable[[Any, str], T]
    retries: int | None = None  # None: the client's configured retries

    def send(self, client: JsonHttpClient) -> T:
        return self.read(client.post_json(self.path, self.body, retries=self.retries), client.url(self.path))


class Dialect:
    """How the client speaks to one kind of model server (`models.<role>.api`)."""

    name: ClassVar[str]
    prm_styles: ClassVar[frozenset[str]] = frozenset()  # the PRM conventions it can score
    scores_router: ClassVar[bool] = False
    # True: the server renders chat prompts itself from the structured request, so the
    # client needs no tokenizer for them.
    renders_chat: ClassVar[bool] = False

    def __init__(self, model: str, separator: str):
        self.model, self.separator = model, separator

    def step(self, prompt: str, request: StepRequest) -> Call[StepOutput]:
        """`prompt`: the rendered prefix, `prompt(problem)` and the steps."""
        body = encode_completion_request(self.model, prompt, request, self.separator)
        return Call(COMPLETIONS_PATH, body, lambda reply, url: decode_completion_reply(reply, self.separator, url))

    def end_session(self, session: str) -> Call[str] | None:
        """None: nothing to send (sglang and vLLM keep shared prefixes in their prefix caches unasked)."""
        return None

    def prm_wants_tokenizer(self, model_cfg: ModelConfig) -> bool:
        """Whether the PRM client should load the served model's tokenizer (a configured
        one also renders chat layouts exactly)."""
        return bool(model_cfg.tokenizer)

    def prm_rewards(self, prm_input: PrmInput, problem: str, steps: Sequence[str], *, last_only: bool) -> Call[list[float]]:
        """Every step's reward, or with `last_only` a list of the newest step's alone;
        `steps` is never empty. Only called for a style in `prm_styles`."""
        raise NotImplementedError(f"api '{self.name}' has no PRM scoring endpoint")

    def router_score(self, query: RouterQuery) -> Call[float]:
        """Only called when `scores_router`."""
        raise NotImplementedError(f"api '{self.name}' has no router scoring endpoint")
