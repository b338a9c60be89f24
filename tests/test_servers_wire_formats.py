"""The wire functions themselves, without HTTP: every endpoint of our server round-trips
(client encodes the request -> server decodes it -> server encodes its reply -> client
decodes it, through JSON text as on the wire), a bad field is named, and the dialect
registry is what the config accepts and one class extends it."""

from __future__ import annotations

import json
import math
from typing import get_args

import pytest

from arbitrage.config import ConfigError, ModelConfig, validate_config
from arbitrage.protocols import AnnotatedStep, ContinuationRequest, RouterQuery, SamplingParams, StepOutput, StepRequest
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.openai_backend import HttpGenerator, HttpPRM, HttpRouter
from arbitrage.servers.prm_input import PrmInput
from arbitrage.servers.wire import DIALECTS, Dialect, dialect_for
from arbitrage.servers.wire import arbitrage as ours
from arbitrage.servers.wire.completions import encode_completion_reply
from arbitrage.servers.wire.fields import RequestError
from test_sampling_params import BAD_FIELDS

SEP = "\n\n"
URL = "http://127.0.0.1:1/path"
RAW = validate_config({}).models.draft.prompt


def over_the_wire(value):
    """What the other side reads: the JSON text, parsed."""
    return json.loads(json.dumps(value, allow_nan=False))


def dialect(api: str = "arbitrage") -> Dialect:
    cfg = ModelConfig(path="served", backend="openai", base_url="http://127.0.0.1:1", api=api)
    return dialect_for(cfg, SEP)


STEP_REQUESTS = [
    StepRequest("What is 3 + 4?", (), 64, SamplingParams(), "p1"),
    StepRequest("Ünïcødé: 2×3?\n\nIt has a blank line.", ("first", "", "x\ny"), 1, SamplingParams(0.8, 0.9, 11), None),
    StepRequest("", ("s",), 7, SamplingParams(temperature=1.5, top_p=0.25), "s"),
]
STEP_OUTPUTS = [
    StepOutput("so x = 7", 4, "separator", [-0.25, -1.5, -0.125, -3.0]),
    StepOutput("\\boxed{7}", 3, "eos", [-0.5, 0.0, -2.0]),
    StepOutput("cut sh", 6, "length", []),
    StepOutput("", 0, "eos", []),
]


@pytest.mark.parametrize("request_", STEP_REQUESTS)
@pytest.mark.parametrize("output", STEP_OUTPUTS)
def test_completion_round_trips(request_, output):
    call = dialect().step("the rendered prefix", request_)
    # An unseeded request sends no seed (sglang and vLLM read none as unseeded), so a
    # server's configured seed would fill it: here the server has none.
    decoded, with_logprobs = ours.decode_step_request(
        over_the_wire(call.body), separator=SEP, prompt=RAW, default_sampling=SamplingParams(0.3, 0.3, None)
    )
    assert decoded == request_ and with_logprobs
    reply = encode_completion_reply(output, "served", SEP, with_logprobs=with_logprobs)
    assert call.read(over_the_wire(reply), URL) == output


def test_completion_without_the_structured_field_round_trips_through_the_raw_prompt():
    """A plain OpenAI client (here the sglang dialect) sends only the rendered prefix."""
    from arbitrage.servers.prompting import PrefixRenderer

    request_ = StepRequest("two\n\nlines", ("a", "b"), 9, SamplingParams(0.5, 1.0, None), None)
    call = dialect("sglang").step(PrefixRenderer(RAW, SEP).render(request_.problem, request_.steps), request_)
    assert "arbitrage" not in call.body
    decoded, _ = ours.decode_step_request(over_the_wire(call.body), separator=SEP, prompt=RAW, default_sampling=SamplingParams())
    assert decoded == request_
    output = STEP_OUTPUTS[0]
    assert call.read(over_the_wire(encode_completion_reply(output, "m", SEP, with_logprobs=True)), URL) == output


def test_end_session_round_trips():
    call = dialect().end_session("problem-17")
    session = ours.decode_end_session_request(over_the_wire(call.body))
    assert session == "problem-17" and call.retries == 0
    assert call.read(over_the_wire(ours.encode_end_session_reply(session)), URL) == "problem-17"
    assert dialect("sglang").end_session("p") is None and dialect("vllm").end_session("p") is None


@pytest.mark.parametrize("last_only", [False, True])
def test_prm_round_trips(last_only):
    steps = ["Add.", "Five.", "So \\boxed{5}."]
    call = dialect().prm_rewards(PrmInput("skywork", SEP), "2+3?", steps, last_only=last_only)
    items = ours.decode_prm_request(over_the_wire(call.body))
    assert items == [("2+3?", tuple(steps), last_only)]
    rewards = [[0.75]] if last_only else [[0.0, 0.125, 1.0]]
    assert call.read(over_the_wire(ours.encode_prm_reply(items, rewards, "prm")), URL) == rewards[0]


def test_prm_reply_of_several_inputs_round_trips():
    items = [("p", ("a",), False), ("q", ("a", "b"), False), ("r", (), False)]
    body = over_the_wire(ours.encode_prm_request("prm", [(p, s) for p, s, _ in items], last_only=False))
    assert ours.decode_prm_request(body) == items
    rewards = [[0.5], [0.25, 1.0], []]
    assert ours.decode_prm_reply(over_the_wire(ours.encode_prm_reply(items, rewards, "prm")), [1, 2, 0], URL) == rewards


def test_a_prm_answer_of_the_wrong_length_is_refused_by_the_server():
    with pytest.raises(RuntimeError, match=r"returned \[0.5\] for 2 steps"):
        ours.encode_prm_reply([("p", ("a", "b"), False)], [[0.5]], "prm")
    with pytest.raises(RuntimeError, match="for 1 steps"):
        ours.encode_prm_reply([("p", ("a",), False)], [[math.nan]], "prm")


QUERIES = [
    RouterQuery("2+2?", [AnnotatedStep("a", "draft"), AnnotatedStep("b", "target")], StepOutput("c", 1, "eos")),
    RouterQuery("What is x?", [], StepOutput("so x = 7", 4, "separator", [-0.25, -1.5, -0.125, -3.0])),
    RouterQuery("p", [AnnotatedStep("", "target")], StepOutput("cut", 2, "length", [0.0, -1.0])),
]


@pytest.mark.parametrize("query", QUERIES)
def test_router_round_trips(query):
    call = dialect().router_score(query)
    (decoded,) = ours.decode_router_request(over_the_wire(call.body))
    assert decoded == RouterQuery(query.problem, list(query.previous_steps), query.draft)
    assert call.read(over_the_wire(ours.encode_router_reply([0.625], "router")), URL) == 0.625


@pytest.mark.parametrize(
    "item, message",
    [
        ("not an object", "'input.0' should be an object"),
        ({"previous_steps": [], "draft": {}}, "'input.0.problem' is required"),
        ({"problem": "p", "previous_steps": [{"text": "a", "source": "judge"}], "draft": {}}, "'input.0.previous_steps.0.source' must be draft or target"),
        ({"problem": "p", "previous_steps": [], "draft": {"text": "d", "num_tokens": 1, "finish_reason": "stop"}}, "'input.0.draft.finish_reason' must be"),
        ({"problem": "p", "previous_steps": [], "draft": {"text": "d", "num_tokens": "1", "finish_reason": "eos"}}, "'input.0.draft.num_tokens' should be int, got str"),
        ({"problem": "p", "previous_steps": [], "draft": {"text": "d", "num_tokens": 1, "finish_reason": "eos", "token_logprobs": [True]}}, "'input.0.draft.token_logprobs' should be a list of numbers"),
    ],
)
def test_bad_router_requests_name_the_field(item, message):
    with pytest.raises(RequestError, match=message):
        ours.decode_router_request({"input": [item]})


def test_a_router_querys_session_round_trips():
    query = RouterQuery("p", [], StepOutput("d", 1, "separator", [-0.5]), session="problem-7")
    (decoded,) = ours.decode_router_request(over_the_wire(dialect().router_score(query).body))
    assert decoded == query


CONTINUATIONS = [
    ContinuationRequest("What is 3 + 4?", (), "Add: 3 + 4 = 7.", "p1"),
    ContinuationRequest("Ünïcødé?\n\nblank line", ("first", ""), "", None),
]


@pytest.mark.parametrize("request_", CONTINUATIONS)
def test_continuation_round_trips(request_):
    call = dialect().score_continuation(request_, None)
    assert call.path == ours.CONTINUATION_PATH
    assert ours.decode_continuation_request(over_the_wire(call.body)) == [request_]
    values = [-0.25, -1e-06, -7.5]
    assert call.read(over_the_wire(ours.encode_continuation_reply([values], "target")), URL) == values


@pytest.mark.parametrize(
    "item, message",
    [
        ({"steps": [], "text": "t"}, "'input.0.problem' is required"),
        ({"problem": "p", "steps": "s", "text": "t"}, "'input.0.steps' should be list"),
        ({"problem": "p", "steps": [], "text": 3}, "'input.0.text' should be str"),
        ({"problem": "p", "steps": [], "session": 1}, "'input.0.session' should be str"),
    ],
)
def test_bad_continuation_requests_name_the_field(item, message):
    with pytest.raises(RequestError, match=message):
        ours.decode_continuation_request({"input": [item]})


def test_a_continuation_reply_without_logprobs_is_refused():
    with pytest.raises(BackendError, match="'data.0.logprobs' is empty"):
        ours.decode_continuation_reply({"data": [{"index": 0, "logprobs": []}]}, 1, URL)
    with pytest.raises(NotImplementedError, match="cannot score a continuation"):
        type("Plain", (Dialect,), {"name": "openai"})("m", SEP).score_continuation(CONTINUATIONS[0], None)


@pytest.mark.parametrize("body, message", BAD_FIELDS)
def test_our_server_names_a_bad_sampling_field(body, message):
    with pytest.raises(RequestError, match=message):
        ours.decode_step_request({**body, "arbitrage": {"problem": "p", "steps": []}}, separator=SEP, prompt=RAW, default_sampling=SamplingParams())


# ---- the registry ----


def test_the_registry_is_exactly_the_apis_the_config_accepts():
    assert set(DIALECTS) == set(get_args(ModelConfig.model_fields["api"].annotation))
    assert all(cls.name == api for api, cls in DIALECTS.items())


def test_a_completions_only_dialect_is_one_class_and_one_registry_line(monkeypatch):
    """A server without scoring endpoints (llama.cpp, Ollama, TGI): steps work, and a PRM
    or router on it is refused when it is loaded, not when it is first called."""

    class OpenAIDialect(Dialect):
        name = "openai"

    monkeypatch.setitem(DIALECTS, "openai", OpenAIDialect)
    cfg = ModelConfig(path="served", backend="openai", base_url="http://127.0.0.1:1").model_copy(update={"api": "openai"})
    call = HttpGenerator(cfg, SEP).dialect.step("Q", StepRequest("q", (), 8))
    assert call.path == "/v1/completions" and "arbitrage" not in call.body
    with pytest.raises(ConfigError, match="prm_style 'skywork' over api 'openai' is not supported"):
        HttpPRM(cfg, SEP)
    with pytest.raises(ConfigError, match="api 'openai' has no router scoring endpoint"):
        HttpRouter(cfg, SEP)
