"""OpenAI completions (`POST /v1/completions`), how every dialect generates a step:
the client's request and its reading of the reply, and our server's reading of the
request and its reply.

The request: the rendered prefix as `prompt`, `stop=[separator]`, `max_tokens`, the
sampling fields (with `sampling.extra` verbatim), `logprobs=1`. The reply, OpenAI shape:
`choices[0].text`, `choices[0].finish_reason`, the token logprobs, `usage.completion_tokens`.

Token logprobs come as `choices[0].logprobs.token_logprobs` (OpenAI completions: vLLM,
sglang, llama-cpp-python) or as `choices[0].logprobs.content[].logprob` (llama.cpp's
llama-server, tools/server/server-task.cpp `to_json_oaicompat`; every chat reply).

How a step ended (`step_output`, the one rule):

- `finish_reason` "length": the token cap.
- `finish_reason` "stop_sequence" (TGI, router/src/lib.rs `FinishReason::format`): the separator.
- `finish_reason` "stop", or "eos_token":
  - text ending with the separator: a server that keeps the stop string; the separator.
  - a reported stop: sglang sends `choices[0].matched_stop` (the stop string, or the EOS
    token id; python/sglang/srt/entrypoints/openai/protocol.py CompletionResponseChoice),
    vLLM `choices[0].stop_reason` (the stop string, a stop token id, or null for EOS;
    vllm/entrypoints/openai/completion/protocol.py CompletionResponseChoice), our server
    sglang's `matched_stop`. The separator if it is the separator, else EOS.
  - neither field in the reply: the server cut the stop string and does not say whether
    it or EOS ended the text. llama.cpp answers "stop" for both (server-task.cpp
    `to_json_oaicompat`: `STOP_TYPE_WORD || STOP_TYPE_EOS`), so do Ollama
    (openai/openai.go `ToCompletion`: `DoneReason`) and TGI for EOS. Then one more
    request asks (`stop_probe`): the same prefix plus the text, no stop strings,
    `max_tokens: 1`, the same sampling. A model that ends there answers "stop" (EOS is
    the only stop left); any other token hits the cap and answers "length", so the text
    had ended on the separator. Exact under greedy decoding (the same next-token choice);
    under sampling a fresh draw from the same distribution.

TGI's completions carry no logprobs (server.rs `CompletionComplete { logprobs: None }`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from arbitrage.protocols import SamplingParams, StepOutput, StepRequest
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.wire.fields import RequestError, is_kind, reply_field, request_field

COMPLETIONS_PATH = "/v1/completions"
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"  # chat steps (dialect.py) and chat judges (judge.py)
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for a request without max_tokens


# ---- the client ----


def encode_completion_request(model: str, prompt: str, request: StepRequest, separator: str) -> dict:
    sampling = request.sampling or SamplingParams()
    return {
        **sampling.to_openai_kwargs(),
        "model": model,
        "prompt": prompt,
        "max_tokens": request.max_tokens,
        "stop": [separator],
        "logprobs": 1,
        "n": 1,
        "stream": False,
    }


@dataclass(frozen=True)
class Completion:
    """One choice of a completions (or chat) reply, read but not yet judged.
    `reported_stop`: the stop the server says ended the text, NOT_REPORTED when its reply
    has no field for it."""

    text: str
    finish_reason: str
    reported_stop: Any
    num_tokens: int
    token_logprobs: list[float]


NOT_REPORTED = object()
STOP_FIELDS = ("matched_stop", "stop_reason")  # sglang's, vLLM's


def read_completion(reply: Any, url: str, *, text_field: str = "text") -> Completion:
    """`text_field`: "text" for completions, "message.content" for chat completions."""
    choice = reply_field(reply, "choices.0", url, dict)
    text = reply_field(choice, text_field, url, str, at="choices.0")
    reason = reply_field(choice, "finish_reason", url, str, at="choices.0")
    num_tokens = reply_field(reply, "usage.completion_tokens", url, int)
    if num_tokens < 0:
        raise BackendError(f"{url}: reply field 'usage.completion_tokens' is negative ({num_tokens})")
    reported = NOT_REPORTED
    for name in STOP_FIELDS:
        if name in choice:
            reported = choice[name]
            if reported is not None:
                break
    return Completion(text, reason, reported, num_tokens, _token_logprobs(choice, url))


def step_output(completion: Completion, separator: str, url: str) -> StepOutput | None:
    """The step the completion is, by the rule in this module's docstring; None when it
    stopped but the server did not say whether on the separator or on EOS."""
    text, reason = completion.text, completion.finish_reason
    if reason == "length":
        finish = "length"
    elif reason in ("stop", "stop_sequence", "eos_token"):
        if text.endswith(separator):
            text, finish = text[: -len(separator)], "separator"
        elif reason == "stop_sequence":
            finish = "separator"
        elif reason == "eos_token":
            finish = "eos"
        elif completion.reported_stop is NOT_REPORTED:
            return None
        else:
            finish = "separator" if completion.reported_stop == separator else "eos"
    else:
        raise BackendError(f"{url}: reply field 'choices.0.finish_reason' is {reason!r}; expected 'stop' or 'length'")
    return StepOutput(text=text, num_tokens=completion.num_tokens, finish_reason=finish,
                      token_logprobs=completion.token_logprobs)


def decode_completion_reply(reply: Any, separator: str, url: str) -> StepOutput | Completion:
    """The step, or the read `Completion` when its stop needs `stop_probe`."""
    completion = read_completion(reply, url)
    return step_output(completion, separator, url) or completion


def stop_probe_request(model: str, prompt: str, completion: Completion, request: StepRequest) -> dict:
    """One token after the stopped text, no stop strings (see the module docstring)."""
    sampling = request.sampling or SamplingParams()
    return {**sampling.to_openai_kwargs(), "model": model, "prompt": prompt + completion.text,
            "max_tokens": 1, "n": 1, "stream": False}


def resolve_stop(probe_reply: Any, completion: Completion, url: str) -> StepOutput:
    """EOS when the probe's one token ended the text ("stop"), else the separator."""
    reason = reply_field(probe_reply, "choices.0.finish_reason", url, str)
    if reason not in ("stop", "length", "eos_token"):
        raise BackendError(f"{url}: reply field 'choices.0.finish_reason' is {reason!r}; expected 'stop' or 'length'")
    finish = "separator" if reason == "length" else "eos"
    return StepOutput(text=completion.text, num_tokens=completion.num_tokens, finish_reason=finish,
                      token_logprobs=completion.token_logprobs)


def _token_logprobs(choice: dict, url: str) -> list[float]:
    logprobs = choice.get("logprobs")
    if logprobs is None:
        return []
    if isinstance(logprobs, dict) and "content" in logprobs and "token_logprobs" not in logprobs:
        entries = reply_field(logprobs, "content", url, list, at="choices.0.logprobs")
        values = [entry.get("logprob") if isinstance(entry, dict) else entry for entry in entries]
        where = "choices.0.logprobs.content"
    else:
        values = reply_field(logprobs, "token_logprobs", url, list, at="choices.0.logprobs")
        where = "choices.0.logprobs.token_logprobs"
    out = []
    for index, value in enumerate(values):
        if value is None:  # some servers send null for the first prompt token
            continue
        if not is_kind(value, float):
            raise BackendError(f"{url}: reply field '{where}.{index}' is not a number: {value!r}")
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
