"""A small LangGraph agent whose model is the pipeline server, reached through
langchain-openai's ChatOpenAI like any hosted model: `solve` asks for a solution; when
the reply holds no boxed answer, `solve` asks once more with the target model writing
every step (a per-request policy); `report` reads the answer.

    arbitrage serve --role pipeline --config examples/lab.yaml --port 8100 --threads 1 &
    python examples/langchain_agent.py --base-url http://127.0.0.1:8100/v1
"""

from __future__ import annotations

import argparse
from typing import Literal

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph

DEFAULT_PROBLEM = "Zoe has 355 apples. Zoe gives away one fifth of the apples. Zoe sells 22 apples. How many apples does Zoe have now?"


class AgentState(MessagesState, total=False):
    answer: str | None


def boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    end = text.find("}", start)
    return text[start + len("\\boxed{"):end] if start >= 0 and end > start else None


def build_agent(model: ChatOpenAI):
    fallback = model.bind(extra_body={"policy": "target_only"})

    def replies(state: AgentState) -> list[AIMessage]:
        return [message for message in state["messages"] if isinstance(message, AIMessage)]

    def solve(state: AgentState) -> dict:
        chosen = fallback if replies(state) else model
        return {"messages": [chosen.invoke(state["messages"])]}

    def route(state: AgentState) -> Literal["solve", "report"]:
        answered = replies(state)
        return "report" if boxed(answered[-1].content) is not None or len(answered) > 1 else "solve"

    def report(state: AgentState) -> dict:
        return {"answer": boxed(replies(state)[-1].content)}

    graph = StateGraph(AgentState)
    graph.add_node("solve", solve)
    graph.add_node("report", report)
    graph.add_edge(START, "solve")
    graph.add_conditional_edges("solve", route, ["solve", "report"])
    graph.add_edge("report", END)
    return graph.compile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8100/v1")
    parser.add_argument("--problem", default=DEFAULT_PROBLEM)
    args = parser.parse_args()

    model = ChatOpenAI(model="arbitrage", base_url=args.base_url, api_key="unused")
    result = build_agent(model).invoke({"messages": [SystemMessage("Solve step by step."), HumanMessage(args.problem)]})
    reply = [message for message in result["messages"] if isinstance(message, AIMessage)][-1]
    usage = reply.response_metadata["token_usage"]
    print(f"problem: {args.problem}\n\n{reply.content}\n")
    print(f"answer: {result['answer']}")
    print(f"steps: {usage['steps']}, escalated: {usage['escalated_steps']}, draft tokens: {usage['draft_tokens']}, "
          f"target tokens: {usage['target_tokens']}")


if __name__ == "__main__":
    main()
