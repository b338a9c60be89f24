"""Reading model-server replies: every field is checked, and a missing or mistyped one
raises BackendError naming the field and the URL (never a bare KeyError).

Wire formats read here (checked against the servers' sources):
- completions, OpenAI shape: `choices[0].text`, `choices[0].finish_reason`,
  `choices[0].logprobs.token_logprobs`, `usage.completion_tokens`. Which stop ended
  the text: sglang sends `choices[0].matched_stop` (the stop string, or the EOS token
  id; sglang python/sglang/srt/entrypoints/openai/protocol.py CompletionResponseChoice),
  vLLM sends `choices[0].stop_reason` (the stop string, a stop token id, or null for EOS;
  vllm/entrypoints/openai/protocol.py CompletionResponseChoice).
- sglang `/classify` (reward models launched with --is-embedding): one
  `{"embedding": [...], "meta_info": {...}}` per input text, a list when the request
  sent a list; the values are the pooled head outputs at the last token, before any
  activation (python/sglang/srt/entrypoints/http_server.py `classify_request`,
  python/sglang/srt/models/qwen2_rm.py Pooler(LAST, normalize=False)).
- vLLM `/pooling`: `{"data": [{"index": i, "data": [[...], ...] | [...]}]}`, one row per
  token (ALL pooling) or per step tag (STEP pooling)
  (vllm/entrypoints/pooling/pooling/protocol.py PoolingResponse).
"""

from __future__ import annotations

import math
from typing import Any

from arbitrage.protocols import StepOutput
from arbitrage.servers.http_client import BackendError

_MISSING = object()


def field(
    obj: Any, path: str, url: str, kind: type | tuple[type, ...] | None = None, *, optional: bool = False, at: str = ""
):
    """Follow a dotted path (`choices.0.text`) through dicts and lists; `at` is where `obj`
    itself sits in the reply, for the message."""
    current = obj
    walked = [at] if at else []
    for part in path.split("."):
        walked.append(part)
        if isinstance(current, list) and part.isdigit():
            index = int(part)
            current = current[index] if index < len(current) else _MISSING
        elif isinstance(current, dict):
            current = current.get(part, _MISSING)
        else:
            current = _MISSING
        if current is _MISSING or (current is None and optional):
            if optional:
                return None
            raise BackendError(f"{url}: reply has no field '{'.'.join(walked)}'")
    if kind is not None and not _is_kind(current, kind):
        raise BackendError(
            f"{url}: reply field '{'.'.join(walked)}' should be {_kind_name(kind)}, "
            f"got {type(current).__name__} {_short(current)}"
        )
    return current


def _is_kind(value: Any, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_completion(reply: Any, separator: str, url: str) -> StepOutput:
    choice = field(reply, "choices.0", url, dict)
    text = field(choice, "text", url, str, at="choices.0")
    reason = field(choice, "finish_reason", url, str, at="choices.0")
    num_tokens = field(reply, "usage.completion_tokens", url, int)
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
    return StepOutput(
        text=text, num_tokens=num_tokens, finish_reason=finish, token_logprobs=_token_logprobs(choice, url)
    )


def _token_logprobs(choice: dict, url: str) -> list[float]:
    logprobs = choice.get("logprobs")
    if logprobs is None:
        return []
    values = field(logprobs, "token_logprobs", url, list, at="choices.0.logprobs")
    out = []
    for index, value in enumerate(values):
        if value is None:  # some servers send null for the first prompt token
            continue
        if not _is_kind(value, float):
            raise BackendError(f"{url}: reply field 'choices.0.logprobs.token_logprobs.{index}' is not a number: {value!r}")
        out.append(float(value))
    return out


def parse_sglang_classify(reply: Any, count: int, url: str) -> list[list[float]]:
    """One pooled vector per input text; a single text may come back as one object."""
    items = [reply] if count == 1 and isinstance(reply, dict) else reply
    if not isinstance(items, list):
        raise BackendError(f"{url}: reply should be a list of {count} results, got {type(reply).__name__}")
    if len(items) != count:
        raise BackendError(f"{url}: reply has {len(items)} results for {count} inputs")
    return [
        _number_list(field(item, "embedding", url, list, at=str(index)), f"{index}.embedding", url)
        for index, item in enumerate(items)
    ]


def parse_vllm_pooling(reply: Any, count: int, url: str) -> list[list[list[float]]]:
    """Per input, its rows (per token or per step), each a list of label values."""
    data = field(reply, "data", url, list)
    if len(data) != count:
        raise BackendError(f"{url}: reply field 'data' has {len(data)} entries for {count} inputs")
    out = []
    for index, entry in enumerate(sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)):
        rows = field(entry, "data", url, list, at=f"data.{index}")
        if rows and not isinstance(rows[0], list):
            rows = [rows]  # a sequence-level result: one row
        out.append([_number_list(row, f"data.{index}.data.{r}", url) for r, row in enumerate(rows)])
    return out


def _number_list(values: list, where: str, url: str) -> list[float]:
    out = []
    for index, value in enumerate(values):
        if not _is_kind(value, float) or not math.isfinite(value):
            raise BackendError(f"{url}: reply field '{where}.{index}' is not a finite number: {_short(value)}")
        out.append(float(value))
    return out


def probability(row: list[float], where: str, url: str) -> float:
    """A head's raw output as a probability, as the in-process models read theirs: one
    value -> sigmoid (Skywork value head, one-logit classifiers); two -> softmax index 1
    (Qwen2.5-Math-PRM, 2-class routers); K > 2 ordinal advantage bins -> the softmax mass
    above the middle class (transformers_backend/router.py escalation_probability)."""
    if not row:
        raise BackendError(f"{url}: {where} is empty")
    if len(row) == 1:
        value = row[0]
        return 1.0 / (1.0 + math.exp(-value)) if value >= 0 else math.exp(value) / (1.0 + math.exp(value))
    high = max(row)
    exps = [math.exp(value - high) for value in row]
    return sum(exps[(len(row) + 1) // 2 :]) / sum(exps)


def unit_interval(value: Any, where: str, url: str) -> float:
    if not _is_kind(value, float) or not (0.0 <= value <= 1.0):
        raise BackendError(f"{url}: reply field '{where}' should be a probability in [0, 1], got {_short(value)}")
    return float(value)
