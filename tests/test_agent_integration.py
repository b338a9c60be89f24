"""The graph inside agent pipelines: as a subgraph node, streaming per step, checkpointed,
and as the deployable graph that langgraph.json names."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from arbitrage.agents import deployment
from arbitrage.agents.reasoner import Reasoner
from arbitrage.config import Config
from arbitrage.graph.context import SolveContext
from arbitrage.policies import ARBITRAGE
from arbitrage.servers.factory import ModelSet
from fakes import ScriptedGenerator, ScriptedRouter

ROOT = Path(__file__).resolve().parents[1]


def scripted_models() -> ModelSet:
    return ModelSet(
        draft=ScriptedGenerator("d", ["d0", "d1", "d2 \\boxed{3}"]),
        target=ScriptedGenerator("t", ["t0", "t1", "t2 \\boxed{3}"]),
        router=ScriptedRouter({"d1": 0.9}),
    )


def load_example():
    spec = importlib.util.spec_from_file_location("agent_pipeline", ROOT / "examples" / "agent_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_subgraph_in_a_parent_agent_streams_one_event_per_committed_step():
    agent = load_example().build_agent(ARBITRAGE)
    context = SolveContext.from_config(Config(), scripted_models())
    run = {"configurable": {"thread_id": "t"}, "recursion_limit": 200}
    events = [
        event
        for _, mode, event in agent.stream({"request": " 1+2? "}, run, context=context,
                                           stream_mode=["custom", "updates"], subgraphs=True)
        if mode == "custom"
    ]
    assert [(e["index"], e["step"]["source"], e["step"]["text"]) for e in events] == [
        (0, "draft", "d0"), (1, "target", "t1"), (2, "draft", "d2 \\boxed{3}")
    ]
    state = agent.get_state(run).values  # the checkpointer persisted the serialisable state
    assert state["reply"] == "3 (3 steps, 1 written by the target)"
    assert json.loads(json.dumps(state["steps"])) == state["steps"]


def test_langgraph_json_names_the_deployable_graph(monkeypatch):
    spec = json.loads((ROOT / "langgraph.json").read_text())
    module_path, name = spec["graphs"]["arbitrage"].split(":")
    assert Path(ROOT / module_path).resolve() == Path(deployment.__file__).resolve() and name == "graph"

    monkeypatch.setattr(deployment._REASONER, "_reasoner", Reasoner(Config(), models=scripted_models()))
    chunks = list(deployment.graph.stream({"problem": "1+2?", "threshold": 0.95},
                                          stream_mode=["custom", "values"], subgraphs=True))
    steps = [event for _, mode, event in chunks if mode == "custom"]
    final = [event for namespace, mode, event in chunks if mode == "values" and namespace == ()][-1]
    assert len(steps) == 3 and all(e["step"]["source"] == "draft" for e in steps)  # 0.9 <= threshold 0.95: nothing escalates
    assert final["final_answer"] == "3" and final["counters"].get("target_calls", 0) == 0
