"""Any other OpenAI-compatible server (`api: openai`: llama.cpp's llama-server,
llama-cpp-python, Ollama, LM Studio, TGI, ...): steps over `/v1/completions` and a judge
PRM, both from the base dialect. Such servers may not say which stop ended a step; the
base's step-end rule (servers/wire/completions.py) asks them when they do not.
Engine-specific sampling fields go in `sampling.extra`."""

from __future__ import annotations

from arbitrage.servers.wire.dialect import Dialect


class OpenAIDialect(Dialect):
    name = "openai"
