"""vLLM (`api: vllm`): steps over completions (the base dialect), or over chat
completions continuing the assistant turn with the server's own chat template
(`continue_final_message: true` with `add_generation_prompt: false`, which vLLM requires
together; vllm/entrypoints/openai/chat_completion/protocol.py ChatCompletionRequest); PRM
and router scores over `POST /pooling` (vllm/entrypoints/pooling/pooling/api_router.py).

Request `{"model", "input": text | token ids, "use_activation": false}`: the raw head
outputs, the activation applied here as the in-process models apply theirs. Reply
`{"data": [{"index": i, "data": [[...], ...] | [...]}]}`
(vllm/entrypoints/pooling/pooling/protocol.py PoolingResponse): a PRM's whole solution
goes in one input and comes back as one row per step tag (STEP pooling) or per token
(ALL pooling, as with the Skywork PRM plugin); per-token rows are read at each step's
last token, which needs the served model's tokenizer client side.

A continuation's logprobs (`score_continuation`, the target-prefill router) come from
`POST /v1/completions` with the token ids the in-process model would be fed as `prompt`,
`echo: true`, `max_tokens: 0`, `logprobs: 1`: with echo and no generation the reply's
`choices[0].logprobs.token_logprobs` holds one entry per prompt token, null for the
first (vllm/entrypoints/openai/completion/serving.py
`request_output_to_completion_response` and `_create_completion_logprobs`), and echo
makes vLLM compute the prompt's logprobs (`prompt_logprobs` defaults to `logprobs` when
`echo` is set, vllm/entrypoints/openai/completion/protocol.py `to_sampling_params`).
vLLM computes prompt logprobs without its prefix cache, so the whole prefix is run again.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, TypeVar

from arbitrage.config import ModelConfig
from arbitrage.protocols import ContinuationRequest, RouterQuery
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.router_input import format_router_input
from arbitrage.servers.token_prompts import ContinuationTokens
from arbitrage.servers.wire.completions import COMPLETIONS_PATH
from arbitrage.servers.wire.dialect import Call, Dialect
from arbitrage.servers.wire.fields import finite_numbers, is_kind, reply_field, short
from arbitrage.servers.wire.scores import probability

POOLING_PATH = "/pooling"
T = TypeVar("T")


class VllmDialect(Dialect):
    name = "vllm"
    prm_styles = frozenset(PrmInput.STYLES) | Dialect.prm_styles
    scores_router = True
    continues_chat = True
    scores_continuation = True
    continuation_wants_tokens = True

    def chat_continuation(self, continuing: bool) -> dict:
        return {"continue_final_message": True, "add_generation_prompt": False} if continuing else {}

    def score_continuation(self, request: ContinuationRequest, tokens: ContinuationTokens | None) -> Call[list[float]]:
        if tokens is None:
            raise ValueError("vLLM scores a continuation from token ids; give the tokens")
        return Call(COMPLETIONS_PATH, encode_echo_logprobs_request(self.model, tokens),
                    lambda reply, url: tokens.fold(decode_echo_logprobs(reply, tokens, url)))

    def prm_wants_tokenizer(self, model_cfg: ModelConfig) -> bool:
        # The Skywork plugin pools per token: usable only with the step-end positions.
        return super().prm_wants_tokenizer(model_cfg) or model_cfg.prm_style == "skywork"

    def prm_rewards(self, prm_input: PrmInput, problem: str, steps: Sequence[str], *, last_only: bool) -> Call[list[float]]:
        if prm_input.style == "judge":
            return self.judge_rewards(prm_input, problem, steps, last_only=last_only)
        ends = None
        if prm_input.tokenizer is not None:
            model_input, ends = prm_input.token_ids(problem, steps)
        else:
            model_input = prm_input.last_token_text(problem, steps)

        def read(rows: list[list[float]], url: str) -> list[float]:
            rewards = [probability(row, f"the row of step {i}", url) for i, row in enumerate(_step_rows(rows, model_input, ends, len(steps), url))]
            return rewards[-1:] if last_only else rewards

        return self._pool(model_input, read)

    def router_score(self, query: RouterQuery) -> Call[float]:
        text = format_router_input(query.problem, query.previous_steps, query.draft.text, separator=self.separator)
        return self._pool(text, lambda rows, url: probability(rows[-1], "'data.0.data'", url))

    def _pool(self, model_input: str | list[int], read: Callable[[list[list[float]], str], T]) -> Call[T]:
        body = {"model": self.model, "input": model_input, "use_activation": False}
        return Call(POOLING_PATH, body, lambda reply, url: read(decode_pooling_reply(reply, 1, url)[0], url))


def _step_rows(rows: list[list[float]], model_input: str | list[int], ends: list[int] | None, steps: int, url: str) -> list[list[float]]:
    """The row of each step: STEP pooling sends exactly those; ALL pooling one per token."""
    if len(rows) == steps and (ends is None or len(rows) != len(model_input)):
        return rows
    if ends is not None and len(rows) == len(model_input):
        return [rows[end] for end in ends]
    hint = "" if ends is not None else "; per-token rewards need models.prm.tokenizer to locate step ends"
    tokens = f" and {len(model_input)} tokens" if ends is not None else ""
    raise BackendError(f"{url}: reply field 'data.0.data' has {len(rows)} rows for {steps} steps{tokens}{hint}")


def decode_pooling_reply(reply: Any, count: int, url: str) -> list[list[list[float]]]:
    """Per input, its rows (per token or per step), each a list of label values."""
    data = reply_field(reply, "data", url, list)
    if len(data) != count:
        raise BackendError(f"{url}: reply field 'data' has {len(data)} entries for {count} inputs")
    out = []
    for index, entry in enumerate(sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)):
        rows = reply_field(entry, "data", url, list, at=f"data.{index}")
        if rows and not isinstance(rows[0], list):
            rows = [rows]  # a sequence-level result: one row
        out.append([finite_numbers(row, f"data.{index}.data.{r}", url) for r, row in enumerate(rows)])
    return out


def encode_echo_logprobs_request(model: str, tokens: ContinuationTokens) -> dict:
    return {"model": model, "prompt": list(tokens.ids), "max_tokens": 0, "echo": True, "logprobs": 1,
            "temperature": 0, "n": 1, "stream": False}


def decode_echo_logprobs(reply: Any, tokens: ContinuationTokens, url: str) -> list[float]:
    """The logprobs of the scored tokens out of the echoed prompt's."""
    values = reply_field(reply, "choices.0.logprobs.token_logprobs", url, list)
    if len(values) != len(tokens.ids):
        raise BackendError(f"{url}: reply field 'choices.0.logprobs.token_logprobs' has {len(values)} entries for a "
                           f"prompt of {len(tokens.ids)} tokens (echo with max_tokens 0)")
    out = []
    for index in range(tokens.prefix_len, len(values)):
        value = values[index]
        if not is_kind(value, float) or not math.isfinite(value):
            raise BackendError(f"{url}: reply field 'choices.0.logprobs.token_logprobs.{index}' is not a finite "
                               f"logprob: {short(value)}")
        out.append(float(value))
    return out
