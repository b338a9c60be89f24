"""OpenAI's chat-completion and completion formats as the pipeline server speaks them:
requests read into a `PipelineRequest` (every bad field named, in OpenAI's error shape),
solutions and committed steps written as `chat.completion`, `chat.completion.chunk` and
`text_completion` objects.

The shapes follow the openai package's own types (openai/types/chat/chat_completion.py,
chat_completion_chunk.py, openai/types/completion.py, completion_usage.py), so the
official client and langchain-openai parse them; fields of our own (`arbitrage` on a
reply or chunk, the extra counters in `usage`) are extras those types keep.

The problem is the text of the last `user` message. System and developer messages,
earlier turns and anything after that message are not shown to the models: they see
the problem through the prompt template of the config, which the lab models were
trained on, so an agent's system prompt cannot change the format the models expect.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from arbitrage.agents.reasoner import Solution
from arbitrage.servers.wire import fields

SERVED_MODEL = "arbitrage"

# Accepted and not used: the config's models section sets sampling, its limits the token budget.
IGNORED_FIELDS = frozenset({
    "temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", "presence_penalty",
    "frequency_penalty", "logit_bias", "user", "metadata", "store", "parallel_tool_calls", "service_tier",
    "prompt_cache_key", "safety_identifier", "reasoning_effort", "verbosity",
})
CHAT_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "n", "policy", "threshold", "tools",
                         "tool_choice", "functions", "function_call", "logprobs", "top_logprobs", "response_format",
                         "stop", "modalities"})
COMPLETION_FIELDS = frozenset({"model", "prompt", "stream", "stream_options", "n", "policy", "threshold", "logprobs",
                               "echo", "suffix", "best_of", "stop"})
MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class RequestError(fields.RequestError):
    """A request the pipeline server refuses; `param` is the request field at fault, as
    OpenAI's error object names it."""

    def __init__(self, message: str, status: int = 400, *, param: str | None = None, code: str | None = None):
        super().__init__(message, status)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class PipelineRequest:
    problem: str
    stream: bool
    include_usage: bool
    policy: str | None
    threshold: float | None


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != [] and value != ""


def _unsupported(body: dict, name: str, why: str) -> None:
    if _is_set(body.get(name)):
        raise RequestError(f"request field '{name}' is not supported: {why}", param=name)


def _common(body: Any, endpoint_fields: frozenset[str]) -> tuple[bool, bool, str | None, float | None]:
    if not isinstance(body, dict):
        raise RequestError("the request body should be a JSON object")
    unknown = sorted(set(body) - endpoint_fields - IGNORED_FIELDS)
    if unknown:
        raise RequestError(f"unknown request field '{unknown[0]}'", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str):
        raise RequestError("request field 'model' is required and should be a string", param="model")
    if model != SERVED_MODEL:
        raise RequestError(f"model '{model}' is not served here; this server serves '{SERVED_MODEL}'", 404,
                           param="model", code="model_not_found")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise RequestError("request field 'stream' should be a boolean", param="stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise RequestError("request field 'stream_options' is only allowed with stream: true", param="stream_options")
        if not isinstance(options, dict):
            raise RequestError("request field 'stream_options' should be an object", param="stream_options")
        include_usage = options.get("include_usage") or False
        if not isinstance(include_usage, bool):
            raise RequestError("request field 'stream_options.include_usage' should be a boolean",
                               param="stream_options.include_usage")
    n = body.get("n")
    if n is not None and (not fields.is_kind(n, int) or n != 1):
        raise RequestError(f"request field 'n' must be 1, got {n!r}", param="n")
    policy = body.get("policy")
    if policy is not None and not isinstance(policy, str):
        raise RequestError("request field 'policy' should be a policy name (string)", param="policy")
    threshold = body.get("threshold")
    if threshold is not None and not fields.is_kind(threshold, float):
        raise RequestError("request field 'threshold' should be a number", param="threshold")
    _unsupported(body, "stop", "steps end on the configured separator, and a solution ends where the graph finishes it")
    _unsupported(body, "logprobs", "a solution mixes two models' tokens; per-step sources come in the 'arbitrage' field")
    return stream, include_usage, policy, None if threshold is None else float(threshold)


def read_chat_request(body: Any) -> PipelineRequest:
    stream, include_usage, policy, threshold = _common(body, CHAT_FIELDS)
    for name in ("tools", "functions"):
        _unsupported(body, name, "the pipeline answers the problem in the last user message and calls no tools")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise RequestError("request field 'tool_choice' is not supported: the pipeline calls no tools",
                           param="tool_choice")
    _unsupported(body, "function_call", "the pipeline calls no functions")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise RequestError("request field 'response_format' supports only {\"type\": \"text\"}",
                           param="response_format")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise RequestError("request field 'modalities' supports only [\"text\"]", param="modalities")
    return PipelineRequest(problem_from_messages(body.get("messages")), stream, include_usage, policy, threshold)


def problem_from_messages(messages: Any) -> str:
    """The text of the last user message (see the module docstring for the others)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("request field 'messages' should be a non-empty list of messages", param="messages")
    last_user = None
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise RequestError(f"request field '{where}' should be an object", param=where)
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise RequestError(f"request field '{where}.role' should be one of {', '.join(MESSAGE_ROLES)}, "
                               f"got {role!r}", param=f"{where}.role")
        if role == "user":
            last_user = index
    if last_user is None:
        raise RequestError("request field 'messages' has no user message: the problem is the last user message",
                           param="messages")
    where = f"messages.{last_user}.content"
    problem = _text_content(messages[last_user].get("content"), where)
    if not problem.strip():
        raise RequestError(f"request field '{where}' is empty: it should hold the problem", param=where)
    return problem


def _text_content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"request field '{where}' should be a string or a list of text parts", param=where)
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise RequestError(f"request field '{where}.{index}' should be a text part, got {kind!r}",
                               param=f"{where}.{index}")
        texts.append(part["text"])
    return "\n".join(texts)


def read_completion_request(body: Any) -> PipelineRequest:
    stream, include_usage, policy, threshold = _common(body, COMPLETION_FIELDS)
    _unsupported(body, "echo", "the reply holds the solution only")
    _unsupported(body, "suffix", "the pipeline writes no insertions")
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise RequestError(f"request field 'best_of' must be 1, got {best_of!r}", param="best_of")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("request field 'prompt' should be one string: the problem", param="prompt")
    if not prompt.strip():
        raise RequestError("request field 'prompt' is empty: it should hold the problem", param="prompt")
    return PipelineRequest(prompt, stream, include_usage, policy, threshold)


def finish_reason(solution: Solution) -> str:
    """The graph's reasons in OpenAI's terms: an answer or EOS is `stop`; a cap is `length`."""
    return "stop" if solution.finish_reason in ("answer", "eos") else "length"


def step_fields(index: int, step: dict) -> dict:
    """A committed step's `arbitrage` field: its place and which model wrote it."""
    return {
        "index": index,
        "source": step["source"],
        "escalated": step["escalated"],
        "tokens": step["tokens"],
        "router_score": step.get("router_score"),
        "draft_score": step.get("draft_score"),
    }


def reply_fields(solution: Solution) -> dict:
    return {**solution.summary(), "steps": [step_fields(i, step) for i, step in enumerate(solution.steps)]}


class ReplyWriter:
    """The objects of one reply, sharing its id and creation time."""

    def __init__(self, chat: bool):
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _object(self, kind: str, choices: list, **extra) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": SERVED_MODEL, "choices": choices,
                **extra}

    def complete(self, solution: Solution) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": solution.text},
                      "finish_reason": finish_reason(solution), "logprobs": None}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": solution.text, "finish_reason": finish_reason(solution), "logprobs": None}
            kind = "text_completion"
        return self._object(kind, [choice], usage=solution.usage(), arbitrage=reply_fields(solution))

    def step_chunk(self, index: int, step: dict, separator: str, *, include_usage: bool) -> dict:
        """The chunk of one committed step; its text joins the earlier ones with the separator."""
        text = (separator if index else "") + step["text"]
        if self.chat:
            delta = {"role": "assistant", "content": text} if index == 0 else {"content": text}
            choice = {"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}
        else:
            choice = {"index": 0, "text": text, "finish_reason": None, "logprobs": None}
        return self._chunk([choice], include_usage, arbitrage=step_fields(index, step))

    def final_chunk(self, solution: Solution, *, include_usage: bool) -> dict:
        if self.chat:
            delta = {} if solution.steps else {"role": "assistant", "content": ""}
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason(solution), "logprobs": None}
        else:
            choice = {"index": 0, "text": "", "finish_reason": finish_reason(solution), "logprobs": None}
        return self._chunk([choice], include_usage, arbitrage=solution.summary())

    def usage_chunk(self, solution: Solution) -> dict:
        """OpenAI's last chunk under stream_options.include_usage: no choices, the usage."""
        return self._chunk([], True, usage=solution.usage())

    def _chunk(self, choices: list, include_usage: bool, **extra) -> dict:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        if include_usage:
            extra.setdefault("usage", None)  # as OpenAI: null on every chunk but the last
        return self._object(kind, choices, **extra)
