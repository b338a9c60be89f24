"""ArbitrageChat, the pipeline as a LangChain chat model over the lab models in-process:
invoke, stream (one chunk per committed step), batch and abatch (concurrent problems
batched), ainvoke, per-call settings, and as the model of a LangGraph agent."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from arbitrage.agents.chat_model import ArbitrageChat, problem_from_messages
from arbitrage.eval.datasets import load_problems
from arbitrage.eval.grading import grade

pytestmark = pytest.mark.slow

PROBLEMS = load_problems("test", dataset="lab", limit=8).problems


@pytest.fixture(scope="module")
def model():
    import torch

    torch.set_num_threads(1)
    chat = ArbitrageChat(max_batch=8)
    yield chat
    chat.reasoner.close()


def test_invoke_returns_the_solution_with_its_counters(model):
    reply = model.invoke(PROBLEMS[0].problem)
    meta = reply.response_metadata
    assert isinstance(reply, AIMessage) and reply.content.endswith("\\boxed{40}.")
    assert grade(meta["final_answer"], PROBLEMS[0].answer, "lab") and meta["finish_reason"] == "eos"
    assert (meta["policy"], meta["threshold"]) == ("arbitrage", 0.5)
    assert meta["counters"]["steps"] == len(meta["steps"]) == reply.content.count("\n\n") + 1
    assert reply.usage_metadata["output_tokens"] == meta["counters"]["committed_tokens"] == sum(
        step["tokens"] for step in meta["steps"])
    assert meta["usage"]["target_calls"] == meta["counters"].get("target_calls", 0)


def test_stream_yields_one_chunk_per_committed_step_adding_up_to_invoke(model):
    reply = model.invoke(PROBLEMS[1].problem)
    chunks = list(model.stream(PROBLEMS[1].problem))
    step_chunks = [chunk for chunk in chunks if chunk.content]
    assert len(step_chunks) == len(reply.response_metadata["steps"]) >= 2
    assert [chunk.response_metadata["steps"][0]["source"] for chunk in step_chunks] == [
        step["source"] for step in reply.response_metadata["steps"]]
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == reply.content and total.response_metadata == reply.response_metadata
    assert total.usage_metadata == reply.usage_metadata


def test_batch_and_abatch_run_problems_together(model):
    problems = [p.problem for p in PROBLEMS]
    before = len(model.reasoner.batch_sizes("draft"))
    replies = model.batch(problems)
    assert max(model.reasoner.batch_sizes("draft")[before:]) > 1  # problems shared decode steps
    alone = [model.invoke(problem).content for problem in problems[:3]]
    assert [reply.content for reply in replies[:3]] == alone
    correct = sum(grade(r.response_metadata["final_answer"], p.answer, "lab") for r, p in zip(replies, PROBLEMS))
    assert correct >= 6, correct

    before = len(model.reasoner.batch_sizes("draft"))
    again = asyncio.run(model.abatch(problems))
    assert [reply.content for reply in again] == [reply.content for reply in replies]
    assert max(model.reasoner.batch_sizes("draft")[before:]) > 1


def test_ainvoke_and_per_call_settings(model):
    reply = asyncio.run(model.ainvoke(PROBLEMS[2].problem, policy="target_only"))
    assert reply.response_metadata["policy"] == "target_only"
    assert {step["source"] for step in reply.response_metadata["steps"]} == {"target"}
    bound = model.bind(policy="rsd", threshold=0.7).invoke(PROBLEMS[2].problem)
    assert (bound.response_metadata["policy"], bound.response_metadata["threshold"]) == ("rsd", 0.7)
    with pytest.raises(ValueError, match="threshold 2.0 is outside"):
        model.invoke(PROBLEMS[2].problem, threshold=2.0)
    with pytest.raises(ValueError, match="no stop strings"):
        model.invoke(PROBLEMS[2].problem, stop=["\n"])


def test_the_model_of_a_langgraph_react_agent(model):
    """langgraph.prebuilt.create_react_agent with no tools takes ArbitrageChat as it is
    (the function is deprecated in favour of langchain.agents, which is not installed)."""
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        agent = create_react_agent(model, tools=[])
    result = agent.invoke({"messages": [SystemMessage("Solve it."), HumanMessage(PROBLEMS[2].problem)]})
    reply = result["messages"][-1]
    assert isinstance(reply, AIMessage) and reply.response_metadata["final_answer"] == PROBLEMS[2].answer


def test_the_problem_is_the_last_human_message():
    messages = [SystemMessage("be brief"), HumanMessage("first"), AIMessage("1"), HumanMessage([{"type": "text", "text": "second"}])]
    assert problem_from_messages(messages) == "second"
    with pytest.raises(ValueError, match="no human message"):
        problem_from_messages([SystemMessage("only this")])
    with pytest.raises(ValueError, match="empty"):
        problem_from_messages([HumanMessage("  ")])
