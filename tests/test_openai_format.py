"""The pipeline server's OpenAI formats without models: replies and chunks validate as the
openai package's own types, and requests are read with every bad field named."""

from __future__ import annotations

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from arbitrage.agents.openai_format import ReplyWriter, RequestError, read_chat_request, read_completion_request
from arbitrage.agents.reasoner import Solution

STEPS = [
    {"text": "13 * 6 = 78.", "source": "draft", "escalated": False, "tokens": 7, "router_score": 0.2, "draft_score": None},
    {"text": "78 - 38 = 40. \\boxed{40}", "source": "target", "escalated": True, "tokens": 9, "router_score": 0.8,
     "draft_score": None},
]


def solution(finish_reason: str = "answer") -> Solution:
    return Solution(
        problem_id="chat-1", problem="Tia ...", policy="arbitrage", threshold=0.5, separator="\n\n", steps=STEPS,
        final_answer="40", finish_reason=finish_reason, prompt_tokens=12,
        counters={"steps": 2, "committed_tokens": 16, "draft_tokens": 14, "target_tokens": 9, "target_calls": 1,
                  "escalated_steps": 1},
    )


def test_a_chat_reply_is_an_openai_chat_completion():
    reply = ChatCompletion.model_validate(ReplyWriter(chat=True).complete(solution()))
    assert reply.choices[0].message.content == "13 * 6 = 78.\n\n78 - 38 = 40. \\boxed{40}"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28, "draft_tokens": 14, "target_tokens": 9,
        "target_calls": 1, "escalated_steps": 1, "steps": 2,
    }
    assert reply.model_extra["arbitrage"]["final_answer"] == "40"
    capped = ChatCompletion.model_validate(ReplyWriter(chat=True).complete(solution("max_steps")))
    assert capped.choices[0].finish_reason == "length"


def test_stream_chunks_are_openai_chunks_that_add_up_to_the_reply():
    writer = ReplyWriter(chat=True)
    payloads = [writer.step_chunk(i, step, "\n\n", include_usage=True) for i, step in enumerate(STEPS)]
    payloads += [writer.final_chunk(solution(), include_usage=True), writer.usage_chunk(solution())]
    chunks = [ChatCompletionChunk.model_validate(payload) for payload in payloads]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == solution().text
    assert [c.model_extra["arbitrage"]["source"] for c in chunks[:2]] == ["draft", "target"]
    assert chunks[2].choices[0].finish_reason == "stop" and chunks[3].choices == []
    assert [c.usage is None for c in chunks] == [True, True, True, False]


def test_a_completion_reply_and_its_chunks_are_openai_completions():
    writer = ReplyWriter(chat=False)
    assert Completion.model_validate(writer.complete(solution())).choices[0].text == solution().text
    final = Completion.model_validate(writer.final_chunk(solution(), include_usage=False))
    assert final.choices[0].finish_reason == "stop" and final.choices[0].text == ""
    # A step's chunk has finish_reason null, as OpenAI's and vLLM's streams do (the client
    # reads stream chunks without the type's stricter check).
    (choice,) = writer.step_chunk(1, STEPS[1], "\n\n", include_usage=False)["choices"]
    assert choice == {"index": 0, "text": "\n\n" + STEPS[1]["text"], "finish_reason": None, "logprobs": None}


def test_requests_are_read_with_the_problem_from_the_last_user_message():
    body = {"model": "arbitrage", "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.2,
            "threshold": 1, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "2+2?"},
                                         {"role": "assistant", "content": "4"}]}
    request = read_chat_request(body)
    assert (request.problem, request.stream, request.include_usage, request.threshold) == ("2+2?", True, True, 1.0)
    assert read_completion_request({"model": "arbitrage", "prompt": ["3+3?"]}).problem == "3+3?"


@pytest.mark.parametrize(
    "body, param",
    [
        ([], None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "arbitrage", "messages": "2+2?"}, "messages"),
        ({"model": "arbitrage", "messages": [{"role": "user", "content": 4}]}, "messages.0.content"),
        ({"model": "arbitrage", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": "arbitrage", "messages": [{"role": "user", "content": "x"}], "policy": 3}, "policy"),
        ({"model": "arbitrage", "messages": [{"role": "user", "content": "x"}], "threshold": True}, "threshold"),
        ({"model": "arbitrage", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
         "response_format"),
        ({"model": "arbitrage", "messages": [{"role": "user", "content": "x"}], "logprobs": True}, "logprobs"),
    ],
)
def test_bad_chat_requests_name_the_field(body, param):
    with pytest.raises(RequestError) as caught:
        read_chat_request(body)
    assert caught.value.status == 400 and caught.value.param == param


def test_bad_completion_requests_name_the_field():
    for body, param in (({"model": "arbitrage", "prompt": ["a", "b"]}, "prompt"),
                        ({"model": "arbitrage", "prompt": "a", "echo": True}, "echo"),
                        ({"model": "arbitrage", "prompt": "a", "messages": []}, "messages")):
        with pytest.raises(RequestError) as caught:
            read_completion_request(body)
        assert caught.value.param == param
