"""The HTTP wire formats, one dialect per kind of model server, picked once from
`models.<role>.api`. The HTTP clients (servers/openai_backend.py) hold a dialect and
send the `Call`s it writes; `arbitrage serve` (servers/http_server.py) reads requests
and writes replies with the same functions its client dialect uses.

    call.py         Call, one request and the reading of its reply
    dialect.py      Dialect, the base (OpenAI completions for steps and a judge PRM)
    completions.py  OpenAI completions, client and server side, and the step-end rule
    judge.py        a judge PRM's question and its reward from the top logprobs
    openai.py       api: openai    any other OpenAI-compatible server (llama.cpp, Ollama, TGI, ...)
    sglang.py       api: sglang    scores over /classify
    vllm.py         api: vllm      scores over /pooling
    arbitrage.py    api: arbitrage our server's endpoints, both sides
    router_query.py a RouterQuery as JSON, both ways
    fields.py       checked reading of reply and request fields
    scores.py       head outputs and sent probabilities as checked probabilities

Every wire detail cites the real server's source where it is written.

Adding a dialect is one class and one line here:

1. A module `wire/<name>.py` with `class NameDialect(Dialect)` setting `name` and
   overriding only what its server does differently. Steps over `/v1/completions` come
   from the base; a server with scoring sets `prm_styles` / `scores_router` and returns
   a `Call` from `prm_rewards` / `router_score`; one that keeps per-problem state answers
   `end_session`. A completions-only server (`api: openai`: llama.cpp, Ollama, TGI)
   needs nothing but its name: steps and a judge PRM come from the base, and the clients
   refuse another PRM style or a router on it at load.
2. Its line in `DIALECTS` below, and its name in `api` of arbitrage/config.py
   (tests/test_servers_wire_formats.py fails while the two disagree).

A new kind of call is one method on `Dialect` that refuses by default, overridden by each
dialect that can make it, as `score_continuation` (the target-prefill router's one
forward over a draft step) is: sglang `/generate` with `return_logprob` and
`logprob_start_len`, vLLM completions with `echo` and `max_tokens: 0`, our server's
`/v1/arbitrage/continuation`.
"""

from __future__ import annotations

from arbitrage.config import ModelConfig
from arbitrage.servers.wire.arbitrage import ArbitrageDialect
from arbitrage.servers.wire.call import Call
from arbitrage.servers.wire.dialect import Dialect
from arbitrage.servers.wire.openai import OpenAIDialect
from arbitrage.servers.wire.sglang import SglangDialect
from arbitrage.servers.wire.vllm import VllmDialect

__all__ = ["Call", "Dialect", "DIALECTS", "dialect_for"]

DIALECTS: dict[str, type[Dialect]] = {
    "sglang": SglangDialect,
    "vllm": VllmDialect,
    "arbitrage": ArbitrageDialect,
    "openai": OpenAIDialect,
}


def dialect_for(model_cfg: ModelConfig, separator: str) -> Dialect:
    """The dialect of the server at `model_cfg.base_url`, naming the served model as it expects."""
    return DIALECTS[model_cfg.api](model_cfg.model or model_cfg.path, separator, extra=model_cfg.sampling.extra)
