"""sglang (`api: sglang`): steps over completions (the base dialect), or over chat
completions with `continue_final_message: true`, which renders the turns before the
assistant's with the generation prompt and appends its text as it is
(python/sglang/srt/entrypoints/openai/protocol.py ChatCompletionRequest,
serving_chat.py); PRM and router scores over `POST /classify`, the endpoint of reward models launched with
--is-embedding (python/sglang/srt/entrypoints/http_server.py `classify_request`).

Request `{"model", "text": str | [str]}`. Reply: one `{"embedding": [...],
"meta_info": {...}}` per input text, a list when the request sent a list; the values
are the pooled head outputs at the last token, before any activation
(python/sglang/srt/models/qwen2_rm.py Pooler(LAST, normalize=False)). One value per
sequence, so a PRM's step rewards take one prefix per step, each ending at its step, in
one batched request (sglang's radix cache shares the prefixes); the newest step's
reward alone takes one.

A continuation's logprobs (`score_continuation`, the target-prefill router) come from
`POST /generate` with the token ids the in-process model would be fed
(`{"input_ids", "sampling_params": {"max_new_tokens": 0, "temperature": 0},
"return_logprob": true, "logprob_start_len": <prefix tokens>}`; the fields of
`GenerateReqInput`, python/sglang/srt/managers/io_struct.py; max_new_tokens 0 passes
`SamplingParams.verify`, python/sglang/srt/sampling/sampling_params.py). No `model`
field: /generate takes none. The reply's `meta_info.input_token_logprobs` holds one
`[logprob, token_id, text-or-null]` per input token from `logprob_start_len` on
(python/sglang/srt/managers/tokenizer_manager.py `detokenize_logprob_tokens`;
test/srt/test_srt_endpoint.py `test_logprob_start_len`: prompt_tokens ==
logprob_start_len + len(input_token_logprobs)), each token scored given the ones before
it. Starting the logprobs at the prefix's end leaves the prefix to sglang's radix cache.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, TypeVar

from arbitrage.protocols import ContinuationRequest, RouterQuery
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.router_input import format_router_input
from arbitrage.servers.token_prompts import ContinuationTokens
from arbitrage.servers.wire.dialect import Call, Dialect
from arbitrage.servers.wire.fields import finite_numbers, is_kind, reply_field, short
from arbitrage.servers.wire.scores import probability

CLASSIFY_PATH = "/classify"
GENERATE_PATH = "/generate"
T = TypeVar("T")


class SglangDialect(Dialect):
    name = "sglang"
    prm_styles = frozenset(PrmInput.STYLES) | Dialect.prm_styles
    scores_router = True
    continues_chat = True
    scores_continuation = True
    continuation_wants_tokens = True

    def chat_continuation(self, continuing: bool) -> dict:
        return {"continue_final_message": True} if continuing else {}

    def score_continuation(self, request: ContinuationRequest, tokens: ContinuationTokens | None) -> Call[list[float]]:
        if tokens is None:
            raise ValueError("sglang scores a continuation from token ids; give the tokens")
        return Call(GENERATE_PATH, encode_generate_logprobs_request(tokens),
                    lambda reply, url: tokens.fold(decode_input_token_logprobs(reply, tokens, url)))

    def prm_rewards(self, prm_input: PrmInput, problem: str, steps: Sequence[str], *, last_only: bool) -> Call[list[float]]:
        if prm_input.style == "judge":
            return self.judge_rewards(prm_input, problem, steps, last_only=last_only)
        first = len(steps) - 1 if last_only else 0
        texts = [prm_input.last_token_text(problem, steps[: i + 1]) for i in range(first, len(steps))]
        return self._classify(
            texts, lambda rows, url: [probability(row, f"result {i} 'embedding'", url) for i, row in enumerate(rows)]
        )

    def router_score(self, query: RouterQuery) -> Call[float]:
        text = format_router_input(query.problem, query.previous_steps, query.draft.text, separator=self.separator)
        return self._classify([text], lambda rows, url: probability(rows[0], "'embedding'", url))

    def _classify(self, texts: list[str], read: Callable[[list[list[float]], str], T]) -> Call[T]:
        # A one-element list trips sglang's embedding path (see its warmup); send a string.
        body = {"model": self.model, "text": texts[0] if len(texts) == 1 else texts}
        return Call(CLASSIFY_PATH, body, lambda reply, url: read(decode_classify_reply(reply, len(texts), url), url))


def decode_classify_reply(reply: Any, count: int, url: str) -> list[list[float]]:
    """One pooled vector per input text; a single text may come back as one object."""
    items = [reply] if count == 1 and isinstance(reply, dict) else reply
    if not isinstance(items, list):
        raise BackendError(f"{url}: reply should be a list of {count} results, got {type(reply).__name__}")
    if len(items) != count:
        raise BackendError(f"{url}: reply has {len(items)} results for {count} inputs")
    return [
        finite_numbers(reply_field(item, "embedding", url, list, at=str(index)), f"{index}.embedding", url)
        for index, item in enumerate(items)
    ]


def encode_generate_logprobs_request(tokens: ContinuationTokens) -> dict:
    return {
        "input_ids": list(tokens.ids),
        "sampling_params": {"max_new_tokens": 0, "temperature": 0},
        "return_logprob": True,
        "logprob_start_len": tokens.prefix_len,
    }


def decode_input_token_logprobs(reply: Any, tokens: ContinuationTokens, url: str) -> list[float]:
    """The logprob of each scored token, checked against the ids that were sent."""
    entries = reply_field(reply, "meta_info.input_token_logprobs", url, list)
    sent = tokens.ids[tokens.prefix_len :]
    if len(entries) != len(sent):
        raise BackendError(f"{url}: reply field 'meta_info.input_token_logprobs' has {len(entries)} entries for "
                           f"the {len(sent)} tokens from logprob_start_len {tokens.prefix_len}")
    values = []
    for index, (entry, token) in enumerate(zip(entries, sent)):
        where = f"meta_info.input_token_logprobs.{index}"
        if not isinstance(entry, list) or len(entry) < 2:
            raise BackendError(f"{url}: reply field '{where}' should be [logprob, token_id, text], got {short(entry)}")
        logprob, token_id = entry[0], entry[1]
        if token_id != token:
            raise BackendError(f"{url}: reply field '{where}' scores token {token_id!r} where {token} was sent")
        if not is_kind(logprob, float) or not math.isfinite(logprob):
            raise BackendError(f"{url}: reply field '{where}.0' is not a finite logprob: {short(logprob)}")
        values.append(float(logprob))
    return values
