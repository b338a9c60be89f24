"""OpenAI completions (`POST /v1/completions`), how every dialect generates a step:
the client's request and its reading of the reply, and our server's reading of the
request and its reply.

The request: the rendered prefix as `prompt`, `stop=[separator]`, `max_tokens`, the
sampling fields, `logprobs=1`. The reply, OpenAI shape: `choices[0].text`,
`choices[0].finish_reason`, `choices[0].logprobs.token_logprobs`,
`usage.completion_tokens`. Which stop ended the text: sglang sends
`choices[0].matched_stop` (the stop string, or the EOS token id; sglang
python/sglang/srt/entrypoints/openai/protocol.py CompletionResponseChoice), vLLM sends
`choices[0].stop_reason` (the stop string, a stop token id, or null for EOS;
vllm/entrypoints/openai/protocol.py CompletionResponseChoice). Our server sends
sglang's `matched_stop`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from arbitrage.protocols import SamplingParams, StepOutput, StepRequest
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.wire.fields import RequestError, is_kind, reply_field, request_field

COMPLETIONS_PATH = "/v1/completions"
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for a request without max_tokens


# ---- the client ----


def encode_completion_request(model: str, prompt: str, request: StepRequest, separator: str) -> dict:
    sampling = request.sampling or SamplingParams()
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": request.max_tokens,
        "stop": [separator],
        "logprobs": 1,
        "n": 1,
        "stream": False,
        **sampling.to_openai_kwargs(),
    }


def decode_completion_reply(reply: Any, separator: str, url: str) -> StepOutput:
    choice = reply_field(reply, "choices.0", url, dict)
    text = reply_field(choice, "text", url, str, at="choices.0")
    reason = reply_field(choice, "finish_reason", url, str, at="choices.0")
    num_tokens = reply_field(reply, "usage.completion_tokens", url, int)
    if num_tokens < 0:
        raise BackendError(f"{url}: reply field 'usage.completion_tokens' is negative ({num_tokens})")
    if reason == "length":
        finish = "length"
    elif reason == "stop":
        matched = choice.get("matched_stop")
        if matched is None:
            matched = choice.get("stop_reason")
        if matched is None and text.endswith(separator):  # a server that keeps the stop string
            text, matched = text[: -len(separator)], separator
        finish = "separator" if matched == separator else "eos"
    else:
        raise BackendError(f"{url}: reply field 'choices.0.finish_reason' is {reason!r}; expected 'stop' or 'length'")
    return StepOutput(text=text, num_tokens=num_tokens, finish_reason=finish, token_logprobs=_token_logprobs(choice, url))


def _token_logprobs(choice: dict, url: str) -> list[float]:
    logprobs = choice.get("logprobs")
    if logprobs is None:
        return []
    values = reply_field(logprobs, "token_logprobs", url, list, at="choices.0.logprobs")
    out = []
    for index, value in enumerate(values):
        if value is None:  # some servers send null for the first prompt token
            continue
        if not is_kind(value, float):
            raise BackendError(f"{url}: reply field 'choices.0.logprobs.token_logprobs.{index}' is not a number: {value!r}")
        out.append(float(value))
    return out


# ---- our server ----


def decode_completion_options(body: dict, separator: str, default_sampling: SamplingParams) -> tuple[int, SamplingParams, bool]:
    """(max_tokens, sampling, whether the reply carries logprobs) of a completion request;
    what it continues is the dialect's business (servers/wire/arbitrage.py)."""
    if request_field(body, "n", int, default=1) != 1:
        raise RequestError("request field 'n' must be 1")
    if body.get("stream"):
        raise RequestError("request field 'stream' is not supported; send stream: false")
    stop = body.get("stop")
    if stop is not None and stop != separator and stop != [separator]:
        raise RequestError(f"request field 'stop' must be the configured separator {separator!r}, got {stop!r}")
    max_tokens = request_field(body, "max_tokens", int, default=DEFAULT_MAX_TOKENS)
    if max_tokens < 1:
        raise RequestError(f"request field 'max_tokens' must be at least 1, got {max_tokens}")
    try:
        sampling = SamplingParams.from_request(body, default_sampling)
    except ValueError as error:
        raise RequestError(str(error)) from None
    return max_tokens, sampling, bool(body.get("logprobs"))


def encode_completion_reply(output: StepOutput, model: str, separator: str, *, with_logprobs: bool) -> dict:
    logprobs = None
    if with_logprobs:
        logprobs = {"token_logprobs": list(output.token_logprobs), "tokens": [], "text_offset": [], "top_logprobs": []}
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": output.text,
                "logprobs": logprobs,
                "finish_reason": "length" if output.finish_reason == "length" else "stop",
                "matched_stop": separator if output.finish_reason == "separator" else None,
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": output.num_tokens, "total_tokens": output.num_tokens},
    }
