"""Arbitrage inside a larger LangGraph agent: the compiled graph is one node of a
parent graph, and each committed reasoning step streams out as it is written.

    python examples/agent_pipeline.py                       # lab models, CPU, offline
    python examples/agent_pipeline.py --config examples/smollm2.yaml \
        --request "Natalia sold 48 clips in April and half as many in May. How many in total?"
"""

from __future__ import annotations

import argparse
from typing import TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from arbitrage.config import load_config
from arbitrage.graph.builder import build_graph, recursion_limit
from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState, initial_state
from arbitrage.policies import Policy
from arbitrage.servers.factory import load_models


class AgentState(SolveState, total=False):
    """The parent's state shares the reasoning graph's keys, plus its own."""

    request: str
    reply: str


def build_agent(policy: Policy):
    """The reasoning node runs under the policy of the run's context (a SolveContext)."""

    def understand(state: AgentState) -> dict:
        # A real agent would rewrite or retrieve here; the subgraph needs its initial state.
        return initial_state("request", state["request"].strip())

    def reply(state: AgentState) -> dict:
        used = sum(step["source"] == "target" for step in state["steps"])
        return {"reply": f"{state['final_answer']} ({len(state['steps'])} steps, {used} written by the target)"}

    agent = StateGraph(AgentState, context_schema=SolveContext)
    agent.add_node("understand", understand)
    agent.add_node("reason", build_graph(policy))  # the compiled Arbitrage graph as a node
    agent.add_node("reply", reply)
    agent.add_edge(START, "understand")
    agent.add_edge("understand", "reason")
    agent.add_edge("reason", "reply")
    agent.add_edge("reply", END)
    return agent.compile(checkpointer=InMemorySaver())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    parser.add_argument("--request", default=None, help="problem text (default: one lab test problem)")
    args = parser.parse_args()

    config = load_config(args.config)
    request = args.request
    if request is None:
        from arbitrage.eval.datasets import load_problems

        request = load_problems("test", dataset="lab", limit=1).problems[0].problem
    agent = build_agent(config.policy)
    context = SolveContext.from_config(config, load_models(config))
    run = {"configurable": {"thread_id": "demo"}, "recursion_limit": recursion_limit(config.limits) + 5}
    print(f"request: {request}\n")
    for _, mode, event in agent.stream({"request": request}, run, context=context,
                                       stream_mode=["custom", "updates"], subgraphs=True):
        if mode == "custom":
            step = event["step"]
            print(f"[step {event['index']} by {step['source']}] {step['text']}")
        elif "reply" in event:
            print(f"\nreply: {event['reply']['reply']}")
    print(f"checkpointed steps: {len(agent.get_state(run).values['steps'])}")


if __name__ == "__main__":
    main()
