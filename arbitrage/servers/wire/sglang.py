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
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from arbitrage.protocols import RouterQuery
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.router_input import format_router_input
from arbitrage.servers.wire.dialect import Call, Dialect
from arbitrage.servers.wire.fields import finite_numbers, reply_field
from arbitrage.servers.wire.scores import probability

CLASSIFY_PATH = "/classify"
T = TypeVar("T")


class SglangDialect(Dialect):
    name = "sglang"
    prm_styles = frozenset(PrmInput.STYLES) | Dialect.prm_styles
    scores_router = True
    continues_chat = True

    def chat_continuation(self, continuing: bool) -> dict:
        return {"continue_final_message": True} if continuing else {}

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
