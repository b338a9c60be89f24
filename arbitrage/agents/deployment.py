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

from arbitrage.config import Config, load_config
from arbitrage.servers.factory import ModelSet, load_models
from arbitrage.solver import Solver


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


class _Models:
    """Loads each role at most once per process, whatever policies the requests ask for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = ModelSet()
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(os.environ.get("ARBITRAGE_CONFIG"))
        return self._config

    def for_config(self, config: Config) -> ModelSet:
        with self._lock:
            for role in config.required_models():
                if getattr(self._loaded, role) is None:
                    setattr(self._loaded, role, getattr(load_models(config, roles=(role,)), role))
            return self._loaded


_MODELS = _Models()


def reason(state: ReasonState, config: RunnableConfig) -> dict:
    run_config = _MODELS.config().with_overrides(policy=state.get("policy"), threshold=state.get("threshold"))
    solver = Solver(run_config, _MODELS.for_config(run_config))
    problem_id = f"request-{uuid.uuid4().hex[:8]}"
    final = solver.graph.invoke(
        solver.initial_state(problem_id, state["problem"]),
        {**config, **solver.run_config()},
        context=solver.context,
    )
    return {key: final.get(key) for key in ("steps", "final_answer", "finish_reason", "counters")}


def build_deployment_graph():
    graph = StateGraph(ReasonState, input_schema=ReasonInput, output_schema=ReasonOutput)
    graph.add_node("reason", reason)
    graph.add_edge(START, "reason")
    graph.add_edge("reason", END)
    return graph.compile(name="arbitrage")


graph = build_deployment_graph()
