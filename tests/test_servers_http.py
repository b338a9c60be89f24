"""The HTTP client against the real local server (`arbitrage serve`'s ModelServer) on
loopback: outputs equal the in-process object's, concurrent requests are batched, and
errors come back as clear BackendErrors. The served models are small deterministic
objects implementing the protocols (the thing being served), so these tests are fast."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from arbitrage.config import Config, validate_config
from arbitrage.protocols import AnnotatedStep, RouterQuery, SamplingParams, StepOutput
from arbitrage.servers.factory import load_model
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.http_server import ModelServer
from arbitrage.servers.openai_backend import HttpGenerator, HttpPRM, HttpRouter
from arbitrage.servers.prompting import PrefixRenderer, parse_raw_prefix

pytestmark = pytest.mark.server

SEP = "\n\n"


def _digest(*parts: str) -> int:
    return int(hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8], 16)


class ToyGenerator:
    """Greedy: the step is a pure function of (problem, steps); sampled: seeded by `seed`.
    Ends the solution after three steps; `max_tokens` below six cuts the step."""

    words_per_step = 6

    def __init__(self):
        self.sampling_seen: list[SamplingParams | None] = []
        self.sessions_seen: list[str | None] = []
        self.ended: list[str] = []
        self.lock = threading.Lock()

    def step(self, problem, steps, *, max_tokens, sampling=None, session=None) -> StepOutput:
        with self.lock:
            self.sampling_seen.append(sampling)
            self.sessions_seen.append(session)
        base = _digest(problem, *steps)
        if sampling is not None and not sampling.greedy:
            base ^= random.Random(sampling.seed).getrandbits(16)
        count = min(self.words_per_step, max_tokens)
        text = " ".join(f"w{(base >> i) % 97}" for i in range(count))
        if max_tokens < self.words_per_step:
            finish = "length"
        else:
            finish = "eos" if len(steps) >= 2 else "separator"
        return StepOutput(text, count, finish, [-((base >> i) % 50) / 7.0 for i in range(count)])

    def end_session(self, session: str) -> None:
        self.ended.append(session)


class FirstCallHold:
    """Holds a model's first call, batched or alone (a lone request skips the batched
    method), so the other concurrent requests queue behind it even when a busy machine
    is slow to start the client threads; later calls take a little while too."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        time.sleep(0.5 if self.calls == 1 else 0.05)


class BatchingToyGenerator(ToyGenerator):
    """Offers step_batch; each batched call takes a while, so concurrent requests queue up."""

    def __init__(self):
        super().__init__()
        self.batch_sizes: list[int] = []
        self._hold = FirstCallHold()

    def step(self, *args, **kwargs):
        self._hold()
        return ToyGenerator.step(self, *args, **kwargs)

    def step_batch(self, requests):
        self.batch_sizes.append(len(requests))
        self._hold()
        return [ToyGenerator.step(self, r.problem, list(r.steps), max_tokens=r.max_tokens, sampling=r.sampling,
                                  session=r.session) for r in requests]


class ToyPRM:
    def score(self, problem, steps):
        return [(_digest(problem, *steps[: i + 1]) % 1000) / 999 for i in range(len(steps))]


class ToyRouter:
    def score(self, query: RouterQuery) -> float:
        tags = "".join(step.source[0] for step in query.previous_steps)
        return (_digest(query.problem, tags, query.draft.text, str(query.draft.token_logprobs)) % 1000) / 999


class FailingPRM:
    def __init__(self):
        self.calls = 0

    def score(self, problem, steps):
        self.calls += 1
        raise RuntimeError("CUDA out of memory (pretend)")


def _client_cfg(url: str, api: str = "arbitrage", **extra):
    return validate_config({"models": {"draft": {"backend": "openai", "path": "toy", "base_url": url, "api": api, **extra}}}).models.draft


@pytest.fixture
def serve():
    servers: list[ModelServer] = []

    def start(role: str, model, config: Config | None = None, **options) -> ModelServer:
        server = ModelServer(role, model, config=config or Config(), **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


PROBLEMS = [
    ("What is 3 + 4?", []),
    ("What is 3 + 4?", ["3 + 4 = 7"]),
    ("Ünïcødé: 2×3?\n\nIt has a blank line.", ["first", "second"]),
    # The template's tail inside the problem: only the structured request is exact here.
    ("tricky \nAnswer:\n inside", ["s"]),
    ("", []),
]


def test_generator_over_http_equals_in_process(serve):
    toy = ToyGenerator()
    server = serve("draft", toy)
    remote = HttpGenerator(_client_cfg(server.url), SEP)
    for problem, steps in PROBLEMS:
        for max_tokens in (3, 64):
            for sampling in (None, SamplingParams(temperature=0.8, top_p=0.9, seed=11)):
                expected = toy.step(problem, steps, max_tokens=max_tokens, sampling=sampling or SamplingParams())
                got = remote.step(problem, steps, max_tokens=max_tokens, sampling=sampling, session="p1")
                assert got == expected
    assert SamplingParams(temperature=0.8, top_p=0.9, seed=11) in toy.sampling_seen
    assert {"p1", None} == set(toy.sessions_seen)
    remote.end_session("p1")
    assert toy.ended == ["p1"]


def test_plain_openai_prompt_is_split_back_with_the_template(serve):
    """A client that sends only `prompt` (sglang dialect, curl) gets the same step."""
    toy = ToyGenerator()
    server = serve("draft", toy)
    remote = HttpGenerator(_client_cfg(server.url, api="sglang"), SEP)
    for problem, steps in PROBLEMS[:3] + PROBLEMS[4:]:
        assert remote.step(problem, steps, max_tokens=64) == toy.step(problem, steps, max_tokens=64, sampling=SamplingParams())


def test_raw_prefix_round_trips():
    prompt = Config().models.draft.prompt
    renderer = PrefixRenderer(prompt, SEP)
    cases = [
        ("p", []),
        ("p", ["a", "b"]),
        ("two\n\nlines", ["", "x\ny"]),
    ]
    for problem, steps in cases:
        assert parse_raw_prefix(prompt, SEP, renderer.render(problem, steps)) == (problem, steps)
    with pytest.raises(ValueError, match="does not start"):
        parse_raw_prefix(prompt, SEP, "Q: nope")


def test_prm_and_router_over_http_equal_in_process(serve):
    prm, router = ToyPRM(), ToyRouter()
    prm_server, router_server = serve("prm", prm), serve("router", router)
    remote_prm = HttpPRM(_client_cfg(prm_server.url), SEP)
    remote_router = HttpRouter(_client_cfg(router_server.url), SEP)
    for problem, steps in PROBLEMS:
        assert remote_prm.score(problem, steps) == prm.score(problem, steps)
    draft = StepOutput("so x = 7", 4, "separator", [-0.25, -1.5, -0.125, -3.0])
    query = RouterQuery("What is x?", [AnnotatedStep("a", "draft"), AnnotatedStep("b", "target")], draft)
    assert remote_router.score(query) == router.score(query)
    assert remote_prm.score("p", []) == []
    assert remote_prm.score_last("p", ["a", "b"]) == prm.score("p", ["a", "b"])[-1]


def test_score_last_reaches_the_served_prms_own_score_last(serve):
    class LastOnlyPRM(ToyPRM):
        def __init__(self):
            self.last_calls = 0

        def score_last(self, problem, steps):
            self.last_calls += 1
            return self.score(problem, steps)[-1]

    prm = LastOnlyPRM()
    remote = HttpPRM(_client_cfg(serve("prm", prm).url), SEP)
    assert remote.score_last("p", ["a", "b"]) == prm.score("p", ["a", "b"])[-1]
    assert prm.last_calls == 1
    with pytest.raises(BackendError, match="must not be empty with last_only"):
        remote.dialect.prm_rewards(remote.input, "p", [], last_only=True).send(remote.client)


def test_concurrent_requests_share_one_batched_call(serve):
    toy = BatchingToyGenerator()
    server = serve("target", toy)
    remote = HttpGenerator(_client_cfg(server.url), SEP)
    jobs = [(f"problem {i}", ["step"] * (i % 3)) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        outputs = list(pool.map(lambda job: remote.step(job[0], job[1], max_tokens=64), jobs))
    assert outputs == [ToyGenerator().step(p, s, max_tokens=64, sampling=SamplingParams()) for p, s in jobs]
    assert max(toy.batch_sizes) >= 4, toy.batch_sizes
    stats = httpx.get(f"{server.url}/v1/arbitrage/stats", trust_env=False).json()
    assert stats["requests"] == 16 and stats["max_batch"] == max(toy.batch_sizes)


def test_without_a_batched_method_requests_run_one_at_a_time(serve):
    active, peak = [0], [0]
    lock = threading.Lock()

    class SlowPRM(ToyPRM):
        def score(self, problem, steps):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1
            return super().score(problem, steps)

    server = serve("prm", SlowPRM())
    remote = HttpPRM(_client_cfg(server.url), SEP)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: remote.score(f"p{i}", ["a", "b"]), range(8)))
    assert results == [ToyPRM().score(f"p{i}", ["a", "b"]) for i in range(8)]
    assert peak[0] == 1


def test_health_and_models(serve):
    server = serve("prm", ToyPRM(), config=validate_config({"models": {"prm": {"path": "lab:prm", "model": "prm-v1"}}}))
    assert server.host == "127.0.0.1"
    assert httpx.get(f"{server.url}/health", trust_env=False).json()["status"] == "ok"
    assert httpx.get(f"{server.url}/v1/models", trust_env=False).json()["data"][0]["id"] == "prm-v1"


def test_wrong_endpoint_for_the_role_is_a_clear_error(serve):
    server = serve("prm", ToyPRM())
    remote = HttpGenerator(_client_cfg(server.url, max_retries=0), SEP)
    with pytest.raises(BackendError, match="serves the prm model; /v1/completions needs a generator server"):
        remote.step("p", [], max_tokens=5)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"prompt": "x", "max_tokens": 4, "stop": ["\n"]}, "'stop' must be the configured separator"),
        ({"prompt": "x", "max_tokens": 0}, "'max_tokens' must be at least 1"),
        ({"arbitrage": {"problem": "p", "steps": "not a list"}, "max_tokens": 4}, "'arbitrage.steps' should be list"),
        ({"arbitrage": {"steps": []}, "max_tokens": 4}, "'arbitrage.problem' is required"),
        ({"prompt": "no template here", "max_tokens": 4}, "'prompt' does not fit the served template"),
        ({"prompt": "x", "n": 2}, "'n' must be 1"),
        ({"arbitrage": {"problem": "p", "steps": []}, "temperature": "hot"}, "'temperature' should be a number, got str"),
        ({"arbitrage": {"problem": "p", "steps": []}, "top_p": 0}, "'top_p' must be in (0, 1], got 0"),
    ],
)
def test_bad_requests_get_400_naming_the_field(serve, body, message):
    server = serve("draft", ToyGenerator())
    reply = httpx.post(f"{server.url}/v1/completions", json=body, trust_env=False)
    assert reply.status_code == 400
    assert message in reply.json()["error"]["message"]


def test_broken_json_request_gets_400(serve):
    server = serve("router", ToyRouter())
    reply = httpx.post(f"{server.url}/v1/arbitrage/router", content=b"{nope", headers={"Content-Type": "application/json"}, trust_env=False)
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]["message"]


def test_model_failure_is_retried_then_reported(serve):
    failing = FailingPRM()
    server = serve("prm", failing)
    remote = HttpPRM(_client_cfg(server.url, max_retries=2), SEP)
    remote.client.backoff_s = 0.01
    with pytest.raises(BackendError, match="failed after 3 attempts.*HTTP 500: RuntimeError: CUDA out of memory"):
        remote.score("p", ["a"])
    assert failing.calls == 3


def test_served_via_the_cli_in_a_separate_process(serve, tmp_path):
    """`python -m arbitrage.servers.cli serve` loads its model through the backend factory;
    here the draft role is itself an HTTP model, so the CLI process is a real proxy."""
    toy = ToyGenerator()
    upstream = serve("draft", toy)
    config_path = tmp_path / "proxy.yaml"
    config_path.write_text(
        yaml.safe_dump({"models": {"draft": {"backend": "openai", "path": "toy", "base_url": upstream.url, "api": "arbitrage"}}})
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "arbitrage.servers.cli", "serve", "--config", str(config_path), "--role", "draft", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("serving draft (toy) on http://127.0.0.1:"), line + process.stderr.read()
        url = line.split(" on ")[1].strip()
        remote = HttpGenerator(_client_cfg(url), SEP)
        assert remote.step("What is 3 + 4?", ["a"], max_tokens=64) == toy.step("What is 3 + 4?", ["a"], max_tokens=64, sampling=SamplingParams())
    finally:
        process.terminate()
        process.wait(10)


def test_factory_builds_http_models_from_config(serve):
    server = serve("router", ToyRouter())
    config = validate_config({"models": {"router": {"backend": "openai", "path": "r", "base_url": server.url, "api": "arbitrage"}}})
    router = load_model("router", config.models.router, config)
    query = RouterQuery("p", [], StepOutput("d", 1, "eos", []))
    assert router.score(query) == ToyRouter().score(query)


def test_prm_batches_last_step_requests_through_score_batch(serve):
    class BatchingPRM(ToyPRM):
        def __init__(self):
            self.batches = []
            self._hold = FirstCallHold()

        def score(self, problem, steps):
            self._hold()
            return ToyPRM.score(self, problem, steps)

        def score_batch(self, items):
            self.batches.append(len(items))
            self._hold()
            return [ToyPRM.score(self, problem, steps) for problem, steps in items]

    prm = BatchingPRM()
    remote = HttpPRM(_client_cfg(serve("prm", prm).url), SEP)
    with ThreadPoolExecutor(8) as pool:
        lasts = list(pool.map(lambda i: remote.score_last(f"p{i}", ["a", "b"]), range(8)))
    assert lasts == [ToyPRM().score(f"p{i}", ["a", "b"])[-1] for i in range(8)]
    assert max(prm.batches) > 1
