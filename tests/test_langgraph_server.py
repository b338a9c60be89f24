"""langgraph.json served by LangGraph's own development server (`langgraph dev`, from the
optional extra `pip install -e ".[studio]"`): a run through its HTTP API solves a lab
problem and streams one custom event per committed step. Skipped without the CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from arbitrage.eval.datasets import load_problems

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LANGGRAPH = shutil.which("langgraph") or (str(Path(os.sys.executable).parent / "langgraph"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def langgraph_url(tmp_path_factory):
    if not Path(LANGGRAPH).exists():
        pytest.skip('the langgraph CLI is not installed (pip install -e ".[studio]")')
    port = free_port()
    log = (tmp_path_factory.mktemp("langgraph") / "dev.log").open("w")
    process = subprocess.Popen(
        [LANGGRAPH, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port),
         "--config", str(ROOT / "langgraph.json")],
        cwd=ROOT, stdout=log,  # langgraph.json's paths are read from the working directory stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "LANGSMITH_TRACING": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, Path(log.name).read_text()[-2000:]
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "langgraph dev did not answer /ok in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            process.terminate()  # with --no-reload the server runs in this one process
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        log.close()


def test_a_run_through_the_langgraph_server_solves_a_lab_problem(langgraph_url):
    from langgraph_sdk import get_sync_client

    problem = load_problems("test", dataset="lab", limit=1).problems[0]
    client = get_sync_client(url=langgraph_url)
    final = client.runs.wait(None, "arbitrage", input={"problem": problem.problem})
    assert final["final_answer"] == problem.answer
    assert final["counters"]["steps"] == len(final["steps"]) >= 2

    parts = list(client.runs.stream(None, "arbitrage", input={"problem": problem.problem, "policy": "target_only"},
                                    stream_mode=["custom", "values"], stream_subgraphs=True))
    steps = [part.data for part in parts if part.event.startswith("custom")]
    values = [part.data for part in parts if part.event == "values"]
    assert [event["index"] for event in steps] == list(range(len(steps))) and steps
    assert {event["step"]["source"] for event in steps} == {"target"}
    assert values[-1]["counters"]["steps"] == len(steps) and values[-1]["final_answer"] is not None
