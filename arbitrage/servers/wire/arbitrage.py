"""Our own server (`api: arbitrage`, `arbitrage serve`): both sides of each endpoint,
so the client and servers/http_server.py use the same functions.

- `POST /v1/completions`: OpenAI completions (servers/wire/completions.py) plus
  `arbitrage: {problem, steps, session}`, the exact call to `Generator.step`, so the
  server renders prompts itself. sglang ignores unknown request fields and vLLM logs and
  ignores them, but only our server is sent it. A request without it (a plain OpenAI
  client) has its raw-format `prompt` split back into problem and steps.
- `POST /v1/arbitrage/end_session` `{"session"}` -> `{"session", "released": true}`.
- `POST /v1/arbitrage/prm` `{"input": [{"problem", "steps"}], "last_only": false}` ->
  `{"data": [{"index", "rewards": [...]}]}`; with `last_only` one reward, the newest step's.
- `POST /v1/arbitrage/router` `{"input": [RouterQuery JSON]}` (servers/wire/router_query.py)
  -> `{"data": [{"index", "score"}]}`.
- `POST /v1/arbitrage/continuation` `{"input": [{"problem", "steps", "text", "session"}]}`
  -> `{"data": [{"index", "logprobs": [...]}]}`: the served generator's
  `score_continuation` of each (its text's token logprobs, then the separator's), the
  session's KV cache reused as in-process.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

from arbitrage.config import ModelConfig, PromptConfig
from arbitrage.protocols import ContinuationRequest, RouterQuery, SamplingParams, StepOutput, StepRequest
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.prompting import parse_raw_prefix
from arbitrage.servers.token_prompts import ContinuationTokens
from arbitrage.servers.wire.completions import decode_completion_options
from arbitrage.servers.wire.dialect import Call, Dialect
from arbitrage.servers.wire.fields import (
    RequestError, finite_numbers, reply_field, request_field, request_object, request_strings,
)
from arbitrage.servers.wire.router_query import decode_router_query, encode_router_query
from arbitrage.servers.wire.scores import unit_interval

END_SESSION_PATH = "/v1/arbitrage/end_session"
PRM_PATH = "/v1/arbitrage/prm"
ROUTER_PATH = "/v1/arbitrage/router"
CONTINUATION_PATH = "/v1/arbitrage/continuation"

PrmItem = tuple[str, tuple[str, ...], bool]  # (problem, steps, last_only): what the PRM batcher takes


class ArbitrageDialect(Dialect):
    name = "arbitrage"
    prm_styles = frozenset({"skywork", "qwen", "judge"})  # the server runs the PRM itself
    scores_router = True
    renders_chat = True
    scores_continuation = True  # the server tokenizes; the client sends the structured call

    def step(self, prompt: str, request: StepRequest) -> Call[StepOutput]:
        call = super().step(prompt, request)
        return replace(call, body={**call.body, "arbitrage": encode_step_input(request)})

    def end_session(self, session: str) -> Call[str]:
        # Releasing a cache is a courtesy: one try, no retries.
        return Call(END_SESSION_PATH, encode_end_session_request(session), decode_end_session_reply, retries=0)

    def prm_wants_tokenizer(self, model_cfg: ModelConfig) -> bool:
        return False  # the server renders the PRM's input itself

    def prm_rewards(self, prm_input: PrmInput, problem: str, steps: Sequence[str], *, last_only: bool) -> Call[list[float]]:
        body = encode_prm_request(self.model, [(problem, tuple(steps))], last_only=last_only)
        return Call(PRM_PATH, body, lambda reply, url: decode_prm_reply(reply, [1 if last_only else len(steps)], url)[0])

    def router_score(self, query: RouterQuery) -> Call[float]:
        return Call(ROUTER_PATH, encode_router_request(self.model, [query]), lambda reply, url: decode_router_reply(reply, 1, url)[0])

    def score_continuation(self, request: ContinuationRequest, tokens: ContinuationTokens | None) -> Call[list[float]]:
        body = encode_continuation_request(self.model, [request])
        return Call(CONTINUATION_PATH, body, lambda reply, url: decode_continuation_reply(reply, 1, url)[0])


# ---- steps ----


def encode_step_input(request: StepRequest) -> dict:
    return {"problem": request.problem, "steps": list(request.steps), "session": request.session}


def decode_step_request(
    body: dict, *, separator: str, prompt: PromptConfig | None, default_sampling: SamplingParams
) -> tuple[StepRequest, bool]:
    """(the step to take, whether the reply carries logprobs). `prompt`: the served
    model's, to split a plain `prompt` back into problem and steps."""
    max_tokens, sampling, with_logprobs = decode_completion_options(body, separator, default_sampling)
    structured = body.get("arbitrage")
    if structured is not None:
        request_object(structured, "arbitrage")
        problem = request_field(structured, "problem", str, at="arbitrage")
        steps = request_strings(structured, "steps", at="arbitrage")
        session = request_field(structured, "session", str, at="arbitrage", default=None)
    else:
        problem, steps = _split_prompt(request_field(body, "prompt", str), prompt, separator)
        session = None
    return StepRequest(problem, tuple(steps), max_tokens, sampling, session), with_logprobs


def _split_prompt(text: str, prompt: PromptConfig | None, separator: str) -> tuple[str, list[str]]:
    if prompt is None or prompt.format != "raw":
        raise RequestError("this server needs the request field 'arbitrage' {problem, steps} for chat prompts")
    try:
        return parse_raw_prefix(prompt, separator, text)
    except ValueError as error:
        raise RequestError(f"request field 'prompt' does not fit the served template: {error}") from None


# ---- end_session ----


def encode_end_session_request(session: str) -> dict:
    return {"session": session}


def decode_end_session_request(body: dict) -> str:
    return request_field(body, "session", str)


def encode_end_session_reply(session: str) -> dict:
    return {"session": session, "released": True}


def decode_end_session_reply(reply: Any, url: str) -> str:
    return reply_field(reply, "session", url, str)


# ---- PRM ----


def encode_prm_request(model: str, items: Sequence[tuple[str, Sequence[str]]], *, last_only: bool) -> dict:
    body: dict = {"model": model, "input": [{"problem": problem, "steps": list(steps)} for problem, steps in items]}
    if last_only:
        body["last_only"] = True
    return body


def decode_prm_request(body: dict) -> list[PrmItem]:
    last_only = request_field(body, "last_only", bool, default=False)
    items = []
    for index, item in enumerate(request_field(body, "input", list)):
        at = f"input.{index}"
        request_object(item, at)
        problem = request_field(item, "problem", str, at=at)
        steps = request_strings(item, "steps", at=at)
        if last_only and not steps:
            raise RequestError(f"request field '{at}.steps' must not be empty with last_only")
        items.append((problem, tuple(steps), last_only))
    return items


def encode_prm_reply(items: Sequence[PrmItem], results: Sequence[Sequence[float]], model: str) -> dict:
    data = []
    for index, ((_, steps, last_only), rewards) in enumerate(zip(items, results)):
        rewards = [float(value) for value in rewards]
        expected = 1 if last_only else len(steps)
        if len(rewards) != expected or not all(math.isfinite(v) for v in rewards):
            raise RuntimeError(f"the PRM returned {rewards!r} for {len(steps)} steps")
        data.append({"index": index, "object": "rewards", "rewards": rewards})
    return {"object": "list", "model": model, "data": data}


def decode_prm_reply(reply: Any, counts: Sequence[int], url: str) -> list[list[float]]:
    """`counts`: how many rewards each input asked for."""
    out = []
    for index, expected in enumerate(counts):
        rewards = reply_field(reply, f"data.{index}.rewards", url, list)
        if len(rewards) != expected:
            raise BackendError(f"{url}: reply field 'data.{index}.rewards' has {len(rewards)} rewards for {expected} steps")
        out.append([unit_interval(value, f"data.{index}.rewards.{i}", url) for i, value in enumerate(rewards)])
    return out


# ---- router ----


def encode_router_request(model: str, queries: Sequence[RouterQuery]) -> dict:
    return {"model": model, "input": [encode_router_query(query) for query in queries]}


def decode_router_request(body: dict) -> list[RouterQuery]:
    return [decode_router_query(item, f"input.{index}") for index, item in enumerate(request_field(body, "input", list))]


def encode_router_reply(scores: Sequence[float], model: str) -> dict:
    data = [{"index": i, "object": "score", "score": float(score)} for i, score in enumerate(scores)]
    return {"object": "list", "model": model, "data": data}


def decode_router_reply(reply: Any, count: int, url: str) -> list[float]:
    return [unit_interval(reply_field(reply, f"data.{i}.score", url), f"data.{i}.score", url) for i in range(count)]


# ---- continuation scoring ----


def encode_continuation_request(model: str, requests: Sequence[ContinuationRequest]) -> dict:
    items = [{"problem": r.problem, "steps": list(r.steps), "text": r.text, "session": r.session} for r in requests]
    return {"model": model, "input": items}


def decode_continuation_request(body: dict) -> list[ContinuationRequest]:
    requests = []
    for index, item in enumerate(request_field(body, "input", list)):
        at = f"input.{index}"
        request_object(item, at)
        requests.append(ContinuationRequest(
            request_field(item, "problem", str, at=at),
            tuple(request_strings(item, "steps", at=at)),
            request_field(item, "text", str, at=at, default=""),
            request_field(item, "session", str, at=at, default=None),
        ))
    return requests


def encode_continuation_reply(results: Sequence[Sequence[float]], model: str) -> dict:
    data = []
    for index, values in enumerate(results):
        values = [float(v) for v in values]
        if not values or not all(math.isfinite(v) for v in values):
            raise RuntimeError(f"the generator scored a continuation as {values!r}")
        data.append({"index": index, "object": "logprobs", "logprobs": values})
    return {"object": "list", "model": model, "data": data}


def decode_continuation_reply(reply: Any, count: int, url: str) -> list[list[float]]:
    out = []
    for index in range(count):
        values = finite_numbers(reply_field(reply, f"data.{index}.logprobs", url, list), f"data.{index}.logprobs", url)
        if not values:
            raise BackendError(f"{url}: reply field 'data.{index}.logprobs' is empty; expected the text's tokens and the separator")
        out.append(values)
    return out
