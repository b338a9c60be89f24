"""The pipeline server (`arbitrage serve --role pipeline`) on loopback over the shipped lab
models, driven by the official openai client and by langchain-openai's ChatOpenAI as an
agent stack would: answers, usage counters, streamed steps, per-request settings, errors
by field, concurrent requests sharing batched decode steps, and the examples."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from openai import OpenAI

from arbitrage.agents.pipeline_server import PipelineServer
from arbitrage.agents.reasoner import Reasoner
from arbitrage.config import Config
from arbitrage.eval.datasets import load_problems
from arbitrage.eval.grading import grade

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
# Lab test problems the default policy solves (greedy decoding: the same every run).
PROBLEMS = load_problems("test", dataset="lab", limit=3).problems


@pytest.fixture(scope="module")
def server():
    import torch

    torch.set_num_threads(1)
    with PipelineServer(Reasoner(Config(), max_batch=16)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def ask(client, problem, **options):
    return client.chat.completions.create(model="arbitrage", messages=[{"role": "user", "content": problem}], **options)


def test_the_openai_client_gets_correct_solutions_and_the_usage_counters(server, client):
    for problem in PROBLEMS:
        reply = ask(client, problem.problem)
        expected = server.reasoner.solve(problem.problem)  # the same graph in-process
        details = reply.model_extra["arbitrage"]
        assert reply.object == "chat.completion" and reply.model == "arbitrage"
        assert reply.choices[0].message.content == expected.text
        assert reply.choices[0].finish_reason == "stop"
        assert grade(details["final_answer"], problem.answer, "lab"), (details["final_answer"], problem.answer)
        usage = reply.usage.model_dump()
        counters = expected.counters
        assert usage["completion_tokens"] == sum(step["tokens"] for step in expected.steps) > 0
        assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert {key: usage[key] for key in ("draft_tokens", "target_tokens", "target_calls", "escalated_steps")} == {
            key: counters.get(key, 0) for key in ("draft_tokens", "target_tokens", "target_calls", "escalated_steps")
        }
        assert [step["source"] for step in details["steps"]] == [step["source"] for step in expected.steps]
    assert any(ask(client, p.problem).usage.model_dump()["target_calls"] for p in PROBLEMS)  # the target did write


def test_a_stream_sends_one_chunk_per_committed_step_then_the_finish_and_the_usage(client):
    problem = PROBLEMS[1].problem
    whole = ask(client, problem)
    chunks = list(ask(client, problem, stream=True, stream_options={"include_usage": True}))
    *steps, finish, usage = chunks
    assert all(chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id for chunk in chunks)
    assert len(steps) == len(whole.model_extra["arbitrage"]["steps"]) >= 2
    assert [chunk.model_extra["arbitrage"]["source"] for chunk in steps] == [
        step["source"] for step in whole.model_extra["arbitrage"]["steps"]
    ]
    assert steps[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content for chunk in steps) == whole.choices[0].message.content
    assert finish.choices[0].finish_reason == "stop" and finish.model_extra["arbitrage"]["final_answer"] == "45"
    assert usage.choices == [] and usage.usage.model_dump() == whole.usage.model_dump()
    assert all(chunk.usage is None for chunk in chunks[:-1])
    without_usage = list(ask(client, problem, stream=True))
    assert len(without_usage) == len(steps) + 1 and without_usage[-1].choices[0].finish_reason == "stop"


def test_a_request_chooses_its_policy_and_threshold(client):
    problem = PROBLEMS[0].problem
    rsd = ask(client, problem, extra_body={"policy": "rsd", "threshold": 0.7}).model_extra["arbitrage"]
    assert (rsd["policy"], rsd["threshold"]) == ("rsd", 0.7) and rsd["counters"]["prm_calls"] >= 1
    target = ask(client, problem, extra_body={"policy": "target_only"}).model_extra["arbitrage"]
    assert {step["source"] for step in target["steps"]} == {"target"} and target["threshold"] is None
    never = ask(client, problem, extra_body={"threshold": 1.0}).model_extra["arbitrage"]
    assert never["counters"].get("target_calls", 0) == 0  # no router score is above 1


@pytest.mark.parametrize(
    "body, status, param, words",
    [
        ({"threshold": 2}, 400, "threshold", "threshold 2.0 is outside [0.0, 1.0]"),
        ({"threshold": "high"}, 400, "threshold", "should be a number"),
        ({"policy": "fastest"}, 400, "policy", "unknown policy 'fastest'"),
        ({"policy": "draft_only", "threshold": 0.3}, 400, "threshold", "takes no threshold"),
        ({"model": "gpt-4o"}, 404, "model", "model 'gpt-4o' is not served here"),
        ({"messages": [{"role": "system", "content": "hi"}]}, 400, "messages", "no user message"),
        ({"messages": [{"role": "user", "content": "  "}]}, 400, "messages.0.content", "is empty"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages.0.content.0", "text part"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role", "should be one of"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools", "calls no tools"),
        ({"n": 2}, 400, "n", "must be 1"),
        ({"stop": ["\n"]}, 400, "stop", "not supported"),
        ({"stream_options": {"include_usage": True}}, 400, "stream_options", "only allowed with stream"),
        ({"temprature": 0.5}, 400, "temprature", "unknown request field 'temprature'"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(server, body, status, param, words):
    request = {"model": "arbitrage", "messages": [{"role": "user", "content": PROBLEMS[0].problem}], **body}
    reply = httpx.post(f"{server.url}/v1/chat/completions", json=request, timeout=60)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["param"] == param and words in error["message"] and error["type"] == "invalid_request_error"


def test_the_openai_client_raises_the_servers_message(client):
    with pytest.raises(openai.BadRequestError, match="threshold 2.0 is outside"):
        ask(client, PROBLEMS[0].problem, extra_body={"threshold": 2})


def test_system_messages_and_earlier_turns_do_not_change_the_solution(client):
    problem = PROBLEMS[2].problem
    alone = ask(client, problem).choices[0].message.content
    conversation = [
        {"role": "system", "content": "You are a pirate. Answer in rhymes."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": problem}]},
    ]
    reply = client.chat.completions.create(model="arbitrage", messages=conversation)
    assert reply.choices[0].message.content == alone


def test_legacy_completions_models_and_health(server, client):
    completion = client.completions.create(model="arbitrage", prompt=PROBLEMS[0].problem)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == ask(client, PROBLEMS[0].problem).choices[0].message.content
    streamed = list(client.completions.create(model="arbitrage", prompt=PROBLEMS[0].problem, stream=True))
    assert "".join(chunk.choices[0].text for chunk in streamed) == completion.choices[0].text
    assert [model.id for model in client.models.list()] == ["arbitrage"]
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/nowhere").status_code == 404


def test_concurrent_requests_share_batched_decode_steps(server, client):
    problems = load_problems("test", dataset="lab", limit=8).problems
    before = len(server.reasoner.batch_sizes("draft"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda p: ask(client, p.problem), problems))
    for problem, reply in zip(problems, replies):
        assert reply.choices[0].message.content == server.reasoner.solve(problem.problem).text
    assert max(server.reasoner.batch_sizes("draft")[before:]) > 1
    stats = httpx.get(f"{server.url}/v1/arbitrage/stats").json()
    assert stats["draft"]["max_batch"] > 1 and stats["draft"]["requests"] > stats["draft"]["batches"]


def test_chat_openai_drives_the_server_with_and_without_streaming(server):
    model = ChatOpenAI(model="arbitrage", base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    messages = [SystemMessage("Solve step by step."), HumanMessage(PROBLEMS[0].problem)]
    reply = model.invoke(messages)
    expected = server.reasoner.solve(PROBLEMS[0].problem)
    assert reply.content == expected.text and grade(expected.final_answer, PROBLEMS[0].answer, "lab")
    token_usage = reply.response_metadata["token_usage"]
    assert token_usage["draft_tokens"] == expected.counters["draft_tokens"]
    assert token_usage["escalated_steps"] == expected.counters.get("escalated_steps", 0)
    assert reply.usage_metadata["output_tokens"] == sum(step["tokens"] for step in expected.steps)

    chunks = list(model.stream(messages, stream_usage=True))
    assert sum(bool(chunk.content) for chunk in chunks) == len(expected.steps)
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == expected.text and total.response_metadata["finish_reason"] == "stop"
    assert total.usage_metadata["output_tokens"] == reply.usage_metadata["output_tokens"]

    target_only = model.bind(extra_body={"policy": "target_only"}).invoke(messages).response_metadata["token_usage"]
    assert target_only["draft_tokens"] == 0 and target_only["target_tokens"] == target_only["completion_tokens"] > 0


def run_example(name: str, server) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--base-url", f"{server.url}/v1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_openai_client_example_streams_each_step_with_its_model(server):
    output = run_example("openai_client.py", server)
    assert "[step 0 by draft]" in output and "[step 1 by target]" in output
    assert "answer: 40" in output and "target_calls=1" in output


def test_the_langchain_agent_example_answers_through_chat_openai(server):
    output = run_example("langchain_agent.py", server)
    assert "answer: 262" in output and "steps: 3" in output


def test_arbitrage_serve_role_pipeline_answers_from_a_subprocess(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "arbitrage.cli", "serve", "--role", "pipeline", "--config", str(ROOT / "examples" / "lab.yaml"),
         "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = process.stdout.readline()  # "serving pipeline (arbitrage) on http://127.0.0.1:PORT"
        assert line.startswith("serving pipeline (arbitrage) on http://127.0.0.1:"), line
        url = line.split(" on ")[1].strip()
        reply = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0).chat.completions.create(
            model="arbitrage", messages=[{"role": "user", "content": PROBLEMS[0].problem}])
        assert reply.model_extra["arbitrage"]["final_answer"] == PROBLEMS[0].answer
    finally:
        process.terminate()
        process.wait(30)


def test_arbitrage_serve_names_the_roles_it_takes():
    from typer.testing import CliRunner

    from arbitrage.cli import app

    result = CliRunner().invoke(app, ["serve", "--role", "planner", "--config", str(ROOT / "examples" / "lab.yaml"),
                                      "--port", "0"])
    assert result.exit_code == 2
    assert "--role must be one of draft, target, prm, router, pipeline, got 'planner'" in " ".join(result.output.split())
