"""What every dialect is: the base class the HTTP clients (servers/openai_backend.py)
hold; each of its methods returns a `Call` (servers/wire/call.py). Generation is OpenAI
completions on every server, so the base speaks it, and so is a judge PRM
(servers/wire/judge.py); other scoring is each server's own."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

from arbitrage.config import ModelConfig
from arbitrage.protocols import ContinuationRequest, RouterQuery, SamplingParams, StepOutput, StepRequest
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.token_prompts import ContinuationTokens
from arbitrage.servers.wire import judge
from arbitrage.servers.wire.call import Call
from arbitrage.servers.wire.completions import (
    CHAT_COMPLETIONS_PATH,
    COMPLETIONS_PATH,
    Completion,
    decode_completion_reply,
    encode_completion_request,
    read_completion,
    resolve_stop,
    step_output,
    stop_probe_request,
)


class Dialect:
    """How the client speaks to one kind of model server (`models.<role>.api`)."""

    name: ClassVar[str]
    # The PRM conventions it can score; a judge asks over completions, which every server has.
    prm_styles: ClassVar[frozenset[str]] = frozenset({"judge"})
    scores_router: ClassVar[bool] = False
    # True: the server renders chat prompts itself from the structured request, so the
    # client needs no tokenizer for them.
    renders_chat: ClassVar[bool] = False
    # True: /v1/chat/completions continues a partial assistant turn (`chat_step`), so a
    # generator may use the server's own chat template (`prompt.chat_template: server`).
    continues_chat: ClassVar[bool] = False
    # Whether it can score a given continuation (`score_continuation`), and whether the
    # client sends it token ids for that (then it needs the served model's tokenizer).
    scores_continuation: ClassVar[bool] = False
    continuation_wants_tokens: ClassVar[bool] = False

    def __init__(self, model: str, separator: str, *, extra: Mapping[str, Any] | None = None):
        """`extra`: the role's `sampling.extra`, sent on its scoring requests too."""
        self.model, self.separator, self.extra = model, separator, dict(extra or {})

    def step(self, prompt: str, request: StepRequest) -> Call[StepOutput]:
        """`prompt`: the rendered prefix, `prompt(problem)` and the steps."""
        body = encode_completion_request(self.model, prompt, request, self.separator)

        def read(reply: Any, url: str) -> StepOutput | Call[StepOutput]:
            step = decode_completion_reply(reply, self.separator, url)
            return self._stop_probe(prompt, step, request) if isinstance(step, Completion) else step

        return Call(COMPLETIONS_PATH, body, read)

    def chat_step(self, messages: list[dict], request: StepRequest) -> Call[StepOutput]:
        """A step over `/v1/chat/completions`: `messages` end with the user turn (no step
        yet) or with the assistant turn holding the steps so far, which the server
        continues. Only called when `continues_chat`."""
        sampling = request.sampling or SamplingParams()
        continuing = messages[-1]["role"] == "assistant"
        body = {**sampling.to_openai_kwargs(), "model": self.model, "messages": messages,
                "max_tokens": request.max_tokens, "stop": [self.separator], "logprobs": True, "n": 1, "stream": False,
                **self.chat_continuation(continuing)}

        def read(reply: Any, url: str) -> StepOutput:
            completion = read_completion(reply, url, text_field="message.content")
            step = step_output(completion, self.separator, url)
            if step is None:
                raise BackendError(f"{url}: the chat reply does not say whether the separator or EOS ended the step")
            return step

        return Call(CHAT_COMPLETIONS_PATH, body, read)

    def chat_continuation(self, continuing: bool) -> dict:
        """The request fields that continue the last assistant turn instead of opening a new one."""
        raise NotImplementedError(f"api '{self.name}' cannot continue a chat turn")

    def _stop_probe(self, prompt: str, completion: Completion, request: StepRequest) -> Call[StepOutput]:
        """Whether a stop the server did not name was EOS or the separator (completions.py)."""
        body = stop_probe_request(self.model, prompt, completion, request)
        return Call(COMPLETIONS_PATH, body, lambda reply, url: resolve_stop(reply, completion, url))

    def end_session(self, session: str) -> Call[str] | None:
        """None: nothing to send (sglang and vLLM keep shared prefixes in their prefix caches unasked)."""
        return None

    def prm_wants_tokenizer(self, model_cfg: ModelConfig) -> bool:
        """Whether the PRM client should load the served model's tokenizer (a configured
        one also renders chat layouts exactly). A judge renders its question with the
        tokenizer's chat template, as the in-process judge does, unless the server's own
        template is asked for."""
        if model_cfg.prm_style == "judge":
            return model_cfg.prompt.chat_template != "server"
        return bool(model_cfg.tokenizer)

    def prm_rewards(self, prm_input: PrmInput, problem: str, steps: Sequence[str], *, last_only: bool) -> Call[list[float]]:
        """Every step's reward, or with `last_only` a list of the newest step's alone;
        `steps` is never empty. Only called for a style in `prm_styles`; the base asks a judge."""
        if prm_input.style != "judge":
            raise NotImplementedError(f"api '{self.name}' has no PRM scoring endpoint")
        return self.judge_rewards(prm_input, problem, steps, last_only=last_only)

    def judge_rewards(self, prm_input: PrmInput, problem: str, steps: Sequence[str], *, last_only: bool) -> Call[list[float]]:
        """P(Yes) for each step (servers/wire/judge.py): one request per step scored."""
        first = len(steps) - 1 if last_only else 0
        calls = [judge.question_call(self.model, prm_input, problem, steps[: i + 1], self.extra) for i in range(first, len(steps))]
        return judge.chain(calls)

    def router_score(self, query: RouterQuery) -> Call[float]:
        """Only called when `scores_router`."""
        raise NotImplementedError(f"api '{self.name}' has no router scoring endpoint")

    def score_continuation(self, request: ContinuationRequest, tokens: ContinuationTokens | None) -> Call[list[float]]:
        """The continuation's token logprobs, then the separator's as one entry
        (protocols.ContinuationScorer). `tokens`: the ids to send, when
        `continuation_wants_tokens`. Only called when `scores_continuation`."""
        raise NotImplementedError(f"api '{self.name}' cannot score a continuation")
