"""Why the draft and target nodes keep their own HTTP client (arbitrage/agents/pipeline_server.py
says it in full): langchain-openai's completion client, pointed at `arbitrage serve` with the
lab draft, loses which stop ended a step, so a step boundary and the end of a solution
look the same to it, while the raw reply tells them apart."""

from __future__ import annotations

import httpx
import pytest
from langchain_openai import OpenAI

from arbitrage.config import Config
from arbitrage.eval.datasets import load_problems
from arbitrage.servers.factory import load_model
from arbitrage.servers.http_server import ModelServer
from arbitrage.servers.prompting import PrefixRenderer
from arbitrage.servers.wire.completions import decode_completion_reply

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_langchain_openai_completions_drop_the_stop_that_ended_a_step():
    config = Config()
    draft_cfg = config.models.draft
    problem = load_problems("test", dataset="lab", limit=1).problems[0].problem
    renderer = PrefixRenderer(draft_cfg.prompt, config.separator)
    with ModelServer("draft", load_model("draft", draft_cfg, config), config=config) as server:
        request = {"model": draft_cfg.path, "max_tokens": 192, "temperature": 0.0, "stop": [config.separator],
                   "logprobs": 1}

        def complete(steps: list[str]) -> dict:
            body = {**request, "prompt": renderer.render(problem, steps)}
            return httpx.post(f"{server.url}/v1/completions", json=body, timeout=60).json()

        first_reply = complete([])
        step = first_reply["choices"][0]["text"]
        replies = [first_reply, complete([step])]
    first, last = (reply["choices"][0] for reply in replies)
    # The server says which stop ended each: the separator (a step), then none (EOS: the solution),
    # and the nodes' own client (the wire's completions reader) reads exactly that.
    assert (first["finish_reason"], first["matched_stop"]) == ("stop", config.separator)
    assert (last["finish_reason"], last["matched_stop"]) == ("stop", None)
    decoded = [decode_completion_reply(reply, config.separator, "arbitrage serve") for reply in replies]
    assert [output.finish_reason for output in decoded] == ["separator", "eos"]

    # langchain-openai's completion client turns each reply choice into a Generation here
    # (OpenAI._generate -> create_llm_result; it sends prompts as a list, which sglang and vLLM
    # take and `arbitrage serve` does not, so the server's replies are fed to it directly).
    llm = OpenAI(model=draft_cfg.path, base_url="http://127.0.0.1:1/v1", api_key="unused")
    result = llm.create_llm_result([first, last], ["first step", "last step"], {"n": 1}, {})
    infos = [generations[0] for generations in result.generations]
    assert [info.text for info in infos] == [step, last["text"]]
    # Both are just "stop": the distinction the draft node needs is gone.
    assert [info.generation_info["finish_reason"] for info in infos] == ["stop", "stop"]
    assert all(set(info.generation_info) == {"finish_reason", "logprobs"} for info in infos)
    assert infos[0].generation_info["logprobs"]["token_logprobs"]  # per-token logprobs do survive
