"""The HTTP client's reading of sglang / vLLM / OpenAI wire formats, and its faults:
each test runs a tiny real HTTP server on loopback that answers with canned replies
(the right shapes, broken JSON, missing fields, 5xx), or no server at all."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arbitrage.config import ConfigError, validate_config
from arbitrage.protocols import AnnotatedStep, RouterQuery, SamplingParams, StepOutput
from arbitrage.servers.http_client import BackendError, JsonHttpClient
from arbitrage.servers.openai_backend import HttpGenerator, HttpPRM, HttpRouter

pytestmark = pytest.mark.server

SEP = "\n\n"


class Canned:
    """Answers each request with `respond(path, body)` -> (status, JSON-able or bytes)."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[tuple[str, object, dict]] = []
        self.client_ports: list[int] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                canned.requests.append((self.path, body, dict(self.headers)))
                canned.client_ports.append(self.client_address[1])
                status, reply = canned.respond(self.path, body)
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def canned():
    servers = []

    def start(respond):
        server = Canned(respond)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def model_cfg(url: str, api: str = "sglang", **extra):
    return validate_config({"models": {"draft": {"backend": "openai", "path": "m", "base_url": url, "api": api, **extra}}}).models.draft


def fast(component):
    component.client.backoff_s = 0.01
    return component


def completion(**choice):
    base = {"text": "x = 2", "finish_reason": "stop", "logprobs": {"token_logprobs": [-0.5, -0.25]}}
    return {"choices": [{"index": 0, **base, **choice}], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}


# ---- completions ----


@pytest.mark.parametrize(
    "choice, finish, text",
    [
        ({"matched_stop": SEP}, "separator", "x = 2"),  # sglang: the stop string
        ({"matched_stop": 128009}, "eos", "x = 2"),  # sglang: the EOS token id
        ({"stop_reason": SEP}, "separator", "x = 2"),  # vLLM: the stop string
        ({"stop_reason": None}, "eos", "x = 2"),  # vLLM: EOS
        ({"finish_reason": "length"}, "length", "x = 2"),
        ({"text": "x = 2" + SEP}, "separator", "x = 2"),  # a server that keeps the stop string
    ],
)
def test_completion_finish_reasons(canned, choice, finish, text):
    server = canned(lambda path, body: (200, completion(**choice)))
    out = HttpGenerator(model_cfg(server.url), SEP).step("p", [], max_tokens=8)
    assert out == StepOutput(text, 4, finish, [-0.5, -0.25])


def test_completion_request_is_the_openai_shape(canned):
    server = canned(lambda path, body: (200, completion(matched_stop=SEP)))
    generator = HttpGenerator(model_cfg(server.url, model="served-name", sampling={"temperature": 0.7, "seed": 3}), SEP)
    generator.step("2+2?", ["a", "b"], max_tokens=32, session="s")
    generator.step("2+2?", [], max_tokens=5, sampling=SamplingParams(temperature=0.0, top_p=0.5))
    (path, first, headers), (_, second, _) = server.requests
    assert path == "/v1/completions" and "Authorization" not in headers
    assert first == {
        "model": "served-name",
        "prompt": "Question: 2+2?\nAnswer:\na\n\nb\n\n",
        "max_tokens": 32,
        "stop": [SEP],
        "logprobs": 1,
        "n": 1,
        "stream": False,
        "temperature": 0.7,
        "top_p": 1.0,
        "seed": 3,
    }
    assert second["temperature"] == 0.0 and second["top_p"] == 0.5 and "seed" not in second
    generator.end_session("s")  # sglang/vLLM: nothing to release, no request
    assert len(server.requests) == 2


MALFORMED = [
    ({}, "no field 'choices'"),
    ([1, 2], "no field 'choices'"),
    ({"choices": [], "usage": {"completion_tokens": 1}}, "no field 'choices.0'"),
    ({"choices": [{"finish_reason": "stop"}], "usage": {"completion_tokens": 1}}, "no field 'choices.0.text'"),
    (completion(text=7), "'choices.0.text' should be str, got int"),
    (completion(finish_reason=None), "'choices.0.finish_reason' should be str, got NoneType"),
    (completion(finish_reason="abort"), "'choices.0.finish_reason' is 'abort'"),
    ({"choices": [completion()["choices"][0]]}, "no field 'usage'"),
    ({**completion(), "usage": {"completion_tokens": "4"}}, "'usage.completion_tokens' should be int, got str"),
    ({**completion(), "usage": {"completion_tokens": -1}}, "'usage.completion_tokens' is negative"),
    (completion(logprobs={"tokens": []}), "no field 'choices.0.logprobs.token_logprobs'"),
    (completion(logprobs={"token_logprobs": [-1.0, "x"]}), "'choices.0.logprobs.token_logprobs.1' is not a number"),
    (b"{not json", "body that is not JSON"),
]


@pytest.mark.parametrize("reply, message", MALFORMED)
def test_malformed_completion_replies_name_the_field_and_url(canned, reply, message):
    server = canned(lambda path, body: (200, reply))
    with pytest.raises(BackendError) as error:
        HttpGenerator(model_cfg(server.url), SEP).step("p", [], max_tokens=8)
    assert message in str(error.value)
    assert server.url in str(error.value)


# ---- retries and faults ----


def test_retries_on_5xx_then_succeeds(canned):
    replies = iter([(503, {"error": {"message": "warming up"}}), (502, b"bad gateway"), (200, completion(matched_stop=SEP))])
    server = canned(lambda path, body: next(replies))
    out = fast(HttpGenerator(model_cfg(server.url, max_retries=3), SEP)).step("p", [], max_tokens=8)
    assert out.finish_reason == "separator" and len(server.requests) == 3


def test_keeps_failing_5xx_gives_up_with_the_last_error(canned):
    server = canned(lambda path, body: (500, {"error": {"message": "boom"}}))
    with pytest.raises(BackendError, match=r"failed after 3 attempts; last error: HTTP 500: boom"):
        fast(HttpGenerator(model_cfg(server.url, max_retries=2), SEP)).step("p", [], max_tokens=8)
    assert len(server.requests) == 3


def test_4xx_is_not_retried_and_shows_the_server_message(canned):
    server = canned(lambda path, body: (400, {"object": "error", "message": "max_tokens must be positive", "code": 400}))
    with pytest.raises(BackendError, match="HTTP 400: max_tokens must be positive"):
        fast(HttpGenerator(model_cfg(server.url, max_retries=3), SEP)).step("p", [], max_tokens=8)
    assert len(server.requests) == 1


def test_dead_server_is_a_clear_error_after_the_wait():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens here
    started = time.monotonic()
    client = JsonHttpClient(f"http://127.0.0.1:{port}", max_retries=2, wait_s=0.5)
    with pytest.raises(BackendError, match=rf"the server at http://127.0.0.1:{port} was unreachable for \d+ s"):
        HttpGenerator(model_cfg(f"http://127.0.0.1:{port}", max_retries=2), SEP, client=client).step("p", [], max_tokens=8)
    assert 0.5 <= time.monotonic() - started < 5


def test_a_slow_reply_times_out_without_a_retry(canned):
    def slow(path, body):
        time.sleep(0.5)
        return 200, completion()

    server = canned(slow)
    with pytest.raises(BackendError, match="timed out after 0.1s waiting for the reply"):
        fast(HttpGenerator(model_cfg(server.url, timeout_s=0.1, max_retries=3), SEP)).step("p", [], max_tokens=8)
    assert len(server.requests) == 1  # a busy server is not sent the work again


def test_api_key_comes_from_the_named_env_var(canned, monkeypatch):
    server = canned(lambda path, body: (200, completion()))
    monkeypatch.setenv("ARBITRAGE_TEST_KEY", "sk-test")
    HttpGenerator(model_cfg(server.url, api_key_env="ARBITRAGE_TEST_KEY"), SEP).step("p", [], max_tokens=8)
    assert server.requests[0][2]["Authorization"] == "Bearer sk-test"
    monkeypatch.delenv("ARBITRAGE_TEST_KEY")
    with pytest.raises(ConfigError, match="'ARBITRAGE_TEST_KEY', which is not set"):
        HttpGenerator(model_cfg(server.url, api_key_env="ARBITRAGE_TEST_KEY"), SEP)


def test_client_reuses_pooled_connections(canned):
    server = canned(lambda path, body: (200, completion()))
    client = JsonHttpClient(server.url)
    for _ in range(5):
        client.post_json("/v1/completions", {})
    assert len(server.client_ports) == 5 and len(set(server.client_ports)) == 1  # one kept-alive connection


# ---- PRM and router over sglang /classify ----


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_sglang_prm_sends_one_prefix_per_step_in_one_request(canned):
    server = canned(lambda path, body: (200, [{"embedding": [v], "meta_info": {}} for v in (0.0, 2.0, -1.0)]))
    prm = HttpPRM(model_cfg(server.url, prm_style="skywork"), SEP)
    assert prm.score("2+2?", ["a", "b", "c"]) == pytest.approx([0.5, sigmoid(2.0), sigmoid(-1.0)])
    ((path, body, _),) = server.requests
    assert path == "/classify"
    assert body == {"model": "m", "text": ["2+2?\na\n\n", "2+2?\na\n\nb\n\n", "2+2?\na\n\nb\n\nc\n\n"]}


def test_sglang_prm_single_step_sends_a_string_and_accepts_one_object(canned):
    server = canned(lambda path, body: (200, {"embedding": [1.0], "meta_info": {}}))
    assert HttpPRM(model_cfg(server.url), SEP).score("p", ["a"]) == pytest.approx([sigmoid(1.0)])
    assert server.requests[0][1]["text"] == "p\na\n\n"


def test_sglang_qwen_prm_ends_each_text_at_the_step_tag(canned):
    server = canned(lambda path, body: (200, [{"embedding": [0.0, math.log(3)]}, {"embedding": [0.0, 0.0]}]))
    prm = HttpPRM(model_cfg(server.url, prm_style="qwen"), SEP)
    assert prm.score("2+2?", ["a", "b"]) == pytest.approx([0.75, 0.5])
    texts = server.requests[0][1]["text"]
    assert texts[0].endswith("<|im_start|>assistant\na<extra_0>")
    assert texts[1].endswith("<|im_start|>assistant\na<extra_0>b<extra_0>")
    assert "Please reason step by step" in texts[0]


@pytest.mark.parametrize(
    "reply, message",
    [
        ([{"embedding": [1.0]}], "1 results for 2 inputs"),
        ({"embedding": [1.0]}, "should be a list of 2 results"),
        ([{"embedding": [1.0]}, {"meta_info": {}}], "no field '1.embedding'"),
        ([{"embedding": [1.0]}, {"embedding": ["x"]}], "'1.embedding.0' is not a finite number"),
        ([{"embedding": [1.0]}, {"embedding": []}], "result 1 'embedding' is empty"),
    ],
)
def test_sglang_prm_malformed_replies(canned, reply, message):
    server = canned(lambda path, body: (200, reply))
    with pytest.raises(BackendError, match=message) as error:
        HttpPRM(model_cfg(server.url), SEP).score("p", ["a", "b"])
    assert f"{server.url}/classify" in str(error.value)


def test_sglang_router_scores_the_annotated_text(canned):
    server = canned(lambda path, body: (200, {"embedding": [0.0, math.log(4)]}))
    router = HttpRouter(model_cfg(server.url), SEP)
    query = RouterQuery("2+2?", [AnnotatedStep("a", "draft"), AnnotatedStep("b", "target")], StepOutput("c", 1, "eos"))
    assert router.score(query) == pytest.approx(0.8)
    assert server.requests[0][1] == {"model": "m", "text": "2+2?\n\nModel 0: a\n\nModel 1: b\n\nModel 0: c"}


# ---- PRM and router over vLLM /pooling ----


def test_vllm_prm_with_step_pooling(canned):
    server = canned(lambda path, body: (200, {"data": [{"index": 0, "object": "pooling", "data": [[0.0, 0.0], [0.0, math.log(9)]]}]}))
    prm = HttpPRM(model_cfg(server.url, api="vllm", prm_style="qwen"), SEP)
    assert prm.score("2+2?", ["a", "b"]) == pytest.approx([0.5, 0.9])
    ((path, body, _),) = server.requests
    assert path == "/pooling" and body["use_activation"] is False
    assert body["input"].endswith("assistant\na<extra_0>b<extra_0>")


def test_vllm_per_token_rows_without_a_tokenizer_say_what_is_missing(canned):
    server = canned(lambda path, body: (200, {"data": [{"index": 0, "data": [[0.1]] * 7}]}))
    prm = HttpPRM(model_cfg(server.url, api="vllm", prm_style="qwen"), SEP)
    with pytest.raises(BackendError, match="7 rows for 2 steps; per-token rewards need models.prm.tokenizer"):
        prm.score("p", ["a", "b"])


def test_vllm_router_reads_a_sequence_result(canned):
    server = canned(lambda path, body: (200, {"data": [{"index": 0, "data": [1.5]}]}))
    router = HttpRouter(model_cfg(server.url, api="vllm"), SEP)
    assert router.score(RouterQuery("p", [], StepOutput("d", 1, "eos"))) == pytest.approx(sigmoid(1.5))


def test_vllm_pooling_count_mismatch(canned):
    server = canned(lambda path, body: (200, {"data": []}))
    with pytest.raises(BackendError, match="'data' has 0 entries for 1 inputs"):
        HttpRouter(model_cfg(server.url, api="vllm"), SEP).score(RouterQuery("p", [], StepOutput("d", 1, "eos")))


# ---- our own server's scoring replies ----


@pytest.mark.parametrize(
    "reply, message",
    [
        ({"data": [{"rewards": [0.5]}]}, "1 rewards for 2 steps"),
        ({"data": [{"rewards": [0.5, 1.5]}]}, "'data.0.rewards.1' should be a probability in \\[0, 1\\]"),
        ({"data": []}, "no field 'data.0'"),
    ],
)
def test_arbitrage_prm_malformed(canned, reply, message):
    server = canned(lambda path, body: (200, reply))
    with pytest.raises(BackendError, match=message):
        HttpPRM(model_cfg(server.url, api="arbitrage"), SEP).score("p", ["a", "b"])


def test_arbitrage_router_score_out_of_range(canned):
    server = canned(lambda path, body: (200, {"data": [{"index": 0, "score": -0.1}]}))
    with pytest.raises(BackendError, match="'data.0.score' should be a probability"):
        HttpRouter(model_cfg(server.url, api="arbitrage"), SEP).score(RouterQuery("p", [], StepOutput("d", 1, "eos")))


def test_configs_the_http_backend_cannot_serve_fail_at_load(tmp_path):
    from arbitrage.config import ConfigError

    missing = str(tmp_path / "missing-model")
    with pytest.raises(ConfigError, match="prm_style 'skywork' over api 'openai' is not supported .it scores: judge."):
        HttpPRM(model_cfg("http://127.0.0.1:1", api="openai"), SEP)
    # A judge renders its question with the served model's chat template: it needs the tokenizer, or the server's template.
    with pytest.raises(ConfigError, match=r"could not load the tokenizer .*missing-model.*prompt.chat_template: server"):
        HttpPRM(model_cfg("http://127.0.0.1:1", prm_style="judge", path=missing), SEP, where="models.prm")
    with pytest.raises(ConfigError, match="router_kind 'features' needs no model server"):
        HttpRouter(model_cfg("http://127.0.0.1:1", router_kind="features"), SEP)
    with pytest.raises(ConfigError, match=r"models.draft: could not load the tokenizer .*missing-model.*set models.draft.tokenizer"):
        HttpGenerator(model_cfg("http://127.0.0.1:1", prompt={"format": "chat"}, path=missing), SEP, where="models.draft")


def test_sglang_score_last_sends_only_the_prefix_ending_at_the_newest_step(canned):
    server = canned(lambda path, body: (200, {"embedding": [2.0], "meta_info": {}}))
    prm = HttpPRM(model_cfg(server.url, prm_style="skywork"), SEP)
    assert prm.score_last("2+2?", ["a", "b", "c"]) == pytest.approx(sigmoid(2.0))
    assert server.requests[0][1] == {"model": "m", "text": "2+2?\na\n\nb\n\nc\n\n"}
    with pytest.raises(ValueError, match="at least one step"):
        prm.score_last("p", [])
