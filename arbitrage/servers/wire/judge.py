"""A judge PRM (`prm_style: judge`) over any OpenAI-compatible server: its question
(servers/prm_input.py) asked for one token, the reward read from the top logprobs of
that token, P(Yes) / (P(Yes) + P(No)) over the answer spellings, as the in-process
judge reads its logits (transformers_backend/prm.py).

- Question rendered here (raw, or with the served model's tokenizer's chat template):
  `POST /v1/completions` `{"prompt", "max_tokens": 1, "logprobs": K, "temperature": 0}`;
  the reply's `choices[0].logprobs.top_logprobs[0]` is `{token: logprob}` (vLLM
  vllm/entrypoints/openai/completion/protocol.py CompletionLogProbs, llama-cpp-python).
- `prompt.chat_template: server`: `POST /v1/chat/completions` `{"messages",
  "max_tokens": 1, "logprobs": true, "top_logprobs": K}`; the reply's
  `choices[0].logprobs.content[0].top_logprobs` is `[{"token", "logprob"}]` (OpenAI chat
  logprobs; vLLM chat_completion/protocol.py ChatCompletionLogProbsContent). llama.cpp's
  llama-server answers completions in this shape too (tools/server/server-task.cpp
  `probs_vector_to_json`).

Only spellings among the top K count (in-process, every spelling does; on SmolLM2 the
difference was about 0.005). An answer none of whose spellings is among them has at most
the smallest probability shown; that bound stands in for it. K = 20 is vLLM's default
`--max-logprobs`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from arbitrage.servers.http_client import BackendError
from arbitrage.servers.prompting import strip_added_bos
from arbitrage.servers.prm_input import JUDGE_NO, JUDGE_YES, PrmInput, judge_messages, judge_text
from arbitrage.servers.wire.call import Call
from arbitrage.servers.wire.completions import CHAT_COMPLETIONS_PATH, COMPLETIONS_PATH
from arbitrage.servers.wire.fields import is_kind, reply_field, short

TOP_LOGPROBS = 20


def question_call(model: str, prm_input: PrmInput, problem: str, steps: Sequence[str], extra: Mapping[str, Any]) -> Call[float]:
    """The Call asking about the last of `steps`; its value is the reward."""
    common = {**extra, "model": model, "max_tokens": 1, "temperature": 0.0, "n": 1, "stream": False}
    if prm_input.chat_on_server:
        body = {**common, "messages": judge_messages(problem, steps, prm_input.system),
                "logprobs": True, "top_logprobs": TOP_LOGPROBS}
        return Call(CHAT_COMPLETIONS_PATH, body, read_reward)
    text, _ = judge_text(problem, steps, prm_input.system, prm_input.tokenizer)
    if prm_input.tokenizer is not None:
        text = strip_added_bos(prm_input.tokenizer, text)  # the server adds it as it tokenizes
    return Call(COMPLETIONS_PATH, {**common, "prompt": text, "logprobs": TOP_LOGPROBS}, read_reward)


def chain(calls: list[Call[float]]) -> Call[list[float]]:
    """One Call whose value is the list of the values of `calls`, sent one after another."""
    def link(index: int, done: tuple):
        current = calls[index]

        def read(reply: Any, url: str):
            values = (*done, current.read(reply, url))
            return link(index + 1, values) if index + 1 < len(calls) else list(values)

        return Call(current.path, current.body, read)

    return link(0, ())


def read_reward(reply: Any, url: str) -> float:
    return judge_reward(top_logprobs(reply, url), url)


def top_logprobs(reply: Any, url: str) -> dict[str, float]:
    """{token text: logprob} of the first generated token, from either reply shape."""
    logprobs = reply_field(reply, "choices.0.logprobs", url, dict)
    if "top_logprobs" in logprobs:
        where = "choices.0.logprobs.top_logprobs.0"
        first = reply_field(logprobs, "top_logprobs.0", url, dict, at="choices.0.logprobs")
        pairs = list(first.items())
    else:
        where = "choices.0.logprobs.content.0.top_logprobs"
        entries = reply_field(logprobs, "content.0.top_logprobs", url, list, at="choices.0.logprobs")
        pairs = []
        for index, entry in enumerate(entries):
            token = reply_field(entry, "token", url, str, at=f"{where}.{index}")
            pairs.append((token, reply_field(entry, "logprob", url, at=f"{where}.{index}")))
    out: dict[str, float] = {}
    for token, value in pairs:
        if not is_kind(value, float) or math.isnan(value):
            raise BackendError(f"{url}: reply field '{where}' has a logprob that is not a number: {short(value)}")
        value = float(value)
        # Two ids may decode to one text (byte-level duplicates): their probabilities add.
        out[token] = _logsumexp([out[token], value]) if token in out else value
    if not out:
        raise BackendError(f"{url}: reply field '{where}' is empty; the server sent no top logprobs")
    return out


def judge_reward(top: dict[str, float], url: str) -> float:
    yes = [value for token, value in top.items() if token in JUDGE_YES]
    no = [value for token, value in top.items() if token in JUDGE_NO]
    if not yes and not no:
        raise BackendError(
            f"{url}: neither Yes nor No is among the judge's top {len(top)} next tokens "
            f"({', '.join(repr(t) for t in list(top)[:8])}); is models.prm a model that answers the question?"
        )
    floor = min(top.values())
    yes_lp = _logsumexp(yes) if yes else floor
    no_lp = _logsumexp(no) if no else floor
    return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, no_lp - yes_lp))))


def _logsumexp(values: list[float]) -> float:
    high = max(values)
    if high == -math.inf:
        return high
    return high + math.log(sum(math.exp(v - high) for v in values))
