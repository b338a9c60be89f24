"""A RouterQuery as JSON, both ways: `{"problem", "previous_steps": [{"text", "source"}],
"draft": {"text", "num_tokens", "finish_reason", "token_logprobs"}, "session"}` (our
server's router endpoint, servers/wire/arbitrage.py; `session` may be null)."""

from __future__ import annotations

from typing import Any

from arbitrage.protocols import AnnotatedStep, RouterQuery, StepOutput
from arbitrage.servers.wire.fields import RequestError, request_field, request_object

SOURCES = ("draft", "target")
FINISH_REASONS = ("separator", "eos", "length")


def encode_router_query(query: RouterQuery) -> dict:
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
        "session": query.session,
    }


def decode_router_query(item: Any, at: str) -> RouterQuery:
    """`at`: where the query sits in the request, for messages."""
    request_object(item, at)
    problem = request_field(item, "problem", str, at=at)
    previous = []
    for i, step in enumerate(request_field(item, "previous_steps", list, at=at)):
        where = f"{at}.previous_steps.{i}"
        request_object(step, where)
        source = request_field(step, "source", str, at=where)
        if source not in SOURCES:
            raise RequestError(f"request field '{where}.source' must be draft or target")
        previous.append(AnnotatedStep(request_field(step, "text", str, at=where), source))
    draft = request_field(item, "draft", dict, at=at)
    where = f"{at}.draft"
    finish = request_field(draft, "finish_reason", str, at=where)
    if finish not in FINISH_REASONS:
        raise RequestError(f"request field '{where}.finish_reason' must be separator, eos or length")
    logprobs = request_field(draft, "token_logprobs", list, at=where, default=[])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logprobs):
        raise RequestError(f"request field '{where}.token_logprobs' should be a list of numbers")
    output = StepOutput(
        text=request_field(draft, "text", str, at=where),
        num_tokens=request_field(draft, "num_tokens", int, at=where),
        finish_reason=finish,
        token_logprobs=[float(v) for v in logprobs],
    )
    session = request_field(item, "session", str, at=at, default=None)
    return RouterQuery(problem=problem, previous_steps=previous, draft=output, session=session)
