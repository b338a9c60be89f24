"""The graph that LangGraph's own tooling serves (see langgraph.json).

LangGraph servers pass only JSON, so this wrapper holds the model handles itself:
models load once per process, on first use, from the YAML named by
$ARBITRAGE_CONFIG (the lab models when unset). Input: {"problem": ..., optional
"policy", "threshold"}; one custom stream event per committed step, emitted by the
nested solver graph (stream with `subgraphs=True`, as for any LangGraph subgraph).
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import NotRequired, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from arbitrage.agents.reasoner import Reasoner
from arbitrage.config import load_config


class ReasonInput(TypedDict):
    problem: str
    policy: NotRequired[str]
    threshold: NotRequired[float]


class ReasonOutput(TypedDict, total=False):
    steps: list[dict]
    final_answer: str | None
    finish_reason: str | None
    counters: dict[str, int]


class ReasonState(ReasonInput, ReasonOutput, total=False):
    pass


class _SharedReasoner:
    """One Reasoner per process (arbitrage/agents/reasoner.py): each role loads once, whatever
    policies the runs ask for, and runs in flight at once share batched decode steps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reasoner: Reasoner | None = None

    def get(self) -> Reasoner:
        with self._lock:
            if self._reasoner is None:
                self._reasoner = Reasoner(load_config(os.environ.get("ARBITRAGE_CONFIG")))
            return self._reasoner


_REASONER = _SharedReasoner()


def reason(state: ReasonState, config: RunnableConfig) -> dict:
    reasoner = _REASONER.get()
    solver = reasoner.solver(reasoner.settings(state.get("policy"), state.get("threshold"), source="input"))
    problem_id = f"request-{uuid.uuid4().hex[:8]}"
    try:
        final = solver.graph.invoke(
            solver.initial_state(problem_id, state["problem"]),
            {**config, **solver.run_config()},
            context=solver.context,
        )
    finally:
        solver.end_sessions(problem_id)
    return {key: final.get(key) for key in ("steps", "final_answer", "finish_reason", "counters")}


def build_deployment_graph():
    graph = StateGraph(ReasonState, input_schema=ReasonInput, output_schema=ReasonOutput)
    graph.add_node("reason", reason)
    graph.add_edge(START, "reason")
    graph.add_edge("reason", END)
    return graph.compile(name="arbitrage")


graph = build_deployment_graph()
