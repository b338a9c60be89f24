"""`score_continuation` over HTTP equals the in-process lab target to 1e-4: through
`arbitrage serve` on 127.0.0.1 (the real server, the session cache reused server side),
and through stand-ins that speak sglang's `/generate` and vLLM's echoed completions
exactly (servers/wire/sglang.py and vllm.py cite the fields), computing their replies
with the same lab model."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
import torch

from arbitrage.config import Config, validate_config
from arbitrage.lab.task import generate_problems
from arbitrage.servers.factory import load_models
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.http_server import ModelServer
from arbitrage.servers.openai_backend import HttpGenerator
from arbitrage.servers.transformers_backend.loading import resolve_path
from test_servers_wire import Canned

pytestmark = pytest.mark.server

SEP = "\n\n"
TARGET_DIR = resolve_path("lab:target", "target")


@pytest.fixture(scope="module")
def target():
    return load_models(Config(), roles=("target",)).target


def cases(count: int = 4):
    """(problem, steps, text): a lab problem's reference steps, the next one right or with its result changed."""
    out = []
    for i, problem in enumerate(generate_problems(count, seed=21)):
        k = i % len(problem.steps)
        text = problem.steps[k] if i % 2 else problem.steps[k].replace("=", "= 1", 1)
        out.append((problem.problem, list(problem.steps[:k]), text))
    return out


def http_generator(url: str, api: str) -> HttpGenerator:
    config = validate_config({"models": {"target": {"backend": "openai", "path": "lab-target", "base_url": url,
                                                     "api": api, "tokenizer": TARGET_DIR}}})
    return HttpGenerator(config.models.target, SEP, where="models.target")


def test_arbitrage_serve_scores_as_the_in_process_model_and_keeps_the_session_cache(target):
    config = Config()
    served = load_models(config, roles=("target",)).target  # its own session store, as a separate server has
    with ModelServer("target", served, config=config) as server:
        client = http_generator(server.url, "arbitrage")
        for problem, steps, text in cases():
            over_http = client.score_continuation(problem, steps, text, session=problem)
            assert len(over_http) == len(text) + 1
            assert over_http == pytest.approx(target.score_continuation(problem, steps, text), abs=1e-4)
            assert served.cached_tokens(problem) > 0
        # Concurrent calls meet in the server's batcher.
        results: dict = {}
        threads = [threading.Thread(target=lambda c=c: results.__setitem__(c[0], client.score_continuation(*c)))
                   for c in cases(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for problem, steps, text in cases(6):
            assert results[problem] == pytest.approx(target.score_continuation(problem, steps, text), abs=1e-4)


@contextmanager
def stand_in(respond):
    """A loopback server answering each POST with `respond(path, body)`, status 200."""
    server = Canned(lambda path, body: (200, respond(path, body)))
    try:
        yield server
    finally:
        server.stop()


def prompt_logprobs(model, ids: list[int]) -> list[float | None]:
    """Each token's logprob given the ones before it (None for the first), as a server computes it."""
    with torch.inference_mode():
        logprobs = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return [None] + [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_sglang_generate_with_logprob_start_len_scores_as_the_in_process_model(target):
    def respond(path, body):
        assert path == "/generate"
        ids, start = body["input_ids"], body["logprob_start_len"]
        values = prompt_logprobs(target.model, ids)
        entries = [[values[i], ids[i], None] for i in range(start, len(ids))]
        return {"text": "", "meta_info": {"prompt_tokens": len(ids), "completion_tokens": 0,
                                          "input_token_logprobs": entries, "output_token_logprobs": []}}

    with stand_in(respond) as server:
        client = http_generator(server.url, "sglang")
        for problem, steps, text in cases():
            over_http = client.score_continuation(problem, steps, text, session=problem)
            assert over_http == pytest.approx(target.score_continuation(problem, steps, text), abs=1e-4)
        path, body, _ = server.requests[0]
        problem, steps, text = cases()[0]
        prefix = len(target.tokenizer("Question: " + problem + "\nAnswer:\n" + "".join(s + SEP for s in steps))["input_ids"])
        assert set(body) == {"input_ids", "sampling_params", "return_logprob", "logprob_start_len"}
        assert body["sampling_params"] == {"max_new_tokens": 0, "temperature": 0} and body["return_logprob"] is True
        assert body["logprob_start_len"] == prefix and len(body["input_ids"]) == prefix + len(text) + len(SEP)


def test_vllm_echoed_prompt_logprobs_score_as_the_in_process_model(target):
    def respond(path, body):
        assert path == "/v1/completions"
        values = prompt_logprobs(target.model, body["prompt"])
        logprobs = {"token_logprobs": values, "tokens": [str(i) for i in body["prompt"]],
                    "text_offset": list(range(len(values))), "top_logprobs": [None] * len(values)}
        choice = {"index": 0, "text": "", "logprobs": logprobs, "finish_reason": "length", "stop_reason": None}
        return {"choices": [choice], "usage": {"prompt_tokens": len(values), "completion_tokens": 0}}

    with stand_in(respond) as server:
        client = http_generator(server.url, "vllm")
        for problem, steps, text in cases():
            over_http = client.score_continuation(problem, steps, text)
            assert over_http == pytest.approx(target.score_continuation(problem, steps, text), abs=1e-4)
        _, body, _ = server.requests[0]
        assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 1
        assert isinstance(body["prompt"], list) and body["model"] == "lab-target"


def test_a_reply_that_scores_other_tokens_or_too_few_is_refused_by_name(target):
    def wrong_token(path, body):
        ids, start = body["input_ids"], body["logprob_start_len"]
        return {"meta_info": {"input_token_logprobs": [[-0.1, ids[i] + 1, None] for i in range(start, len(ids))]}}

    with stand_in(wrong_token) as server:
        with pytest.raises(BackendError, match=r"input_token_logprobs.0' scores token"):
            http_generator(server.url, "sglang").score_continuation("2 + 3?", [], "Add: 2 + 3 = 5.")

    def too_few(path, body):
        return {"choices": [{"logprobs": {"token_logprobs": [None, -0.5]}}]}

    with stand_in(too_few) as server:
        with pytest.raises(BackendError, match="has 2 entries for a prompt of"):
            http_generator(server.url, "vllm").score_continuation("2 + 3?", [], "Add: 2 + 3 = 5.")


@pytest.mark.slow
def test_the_default_router_reading_a_served_target_solves_as_in_process(tmp_path):
    """The target-prefill router stays in the run's process; with the target behind
    `arbitrage serve` every prefill goes over HTTP and the solutions are the in-process ones."""
    from arbitrage.eval.datasets import load_problems
    from arbitrage.eval.run import read_results, run_batch

    problems = load_problems("test", dataset="lab", limit=6).problems
    local = Config()
    served = load_models(local, roles=("target",)).target
    with ModelServer("target", served, config=local) as server:
        data = local.model_dump()
        data["models"]["target"].update(backend="openai", api="arbitrage", base_url=server.url)
        remote = validate_config(data)
        run_batch(remote, problems, tmp_path / "http", progress=False)
        assert sum(server.batcher.batch_sizes) > 0
    run_batch(local, problems, tmp_path / "local", progress=False)
    over_http, in_process = read_results(tmp_path / "http" / "results.jsonl"), read_results(tmp_path / "local" / "results.jsonl")
    assert all(record["error"] is None for record in over_http + in_process)
    assert [[s["text"] for s in r["steps"]] for r in over_http] == [[s["text"] for s in r["steps"]] for r in in_process]
    prefills = sum(r["counters"]["router_prefill_calls"] for r in over_http)
    assert prefills == sum(len(r["steps"]) for r in over_http) > 0
