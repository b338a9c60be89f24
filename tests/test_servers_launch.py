"""Server launch management: exact commands from the example configs, and the process
manager (start, readiness wait, status, stop) driven with a tiny stand-in for sglang / vLLM
that speaks their `/health` and `/v1/completions`, and the real sglang-router in front of
stand-in replicas."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from arbitrage.config import ConfigError, load_config, validate_config
from arbitrage.servers.cli import _standalone_app
from arbitrage.servers.launch import LaunchError, LaunchSpec, ServerManager, launch_specs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

LLAMA_COMMANDS = [
    "python -m sglang.launch_server --model-path meta-llama/Llama-3.2-1B-Instruct --host 127.0.0.1 --port 30001 "
    "--mem-fraction-static 0.15 --context-length 8192 --dtype bfloat16",
    "python -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct --host 127.0.0.1 --port 30002 "
    "--mem-fraction-static 0.5 --context-length 8192 --dtype bfloat16",
    "python -m sglang.launch_server --model-path Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B --host 127.0.0.1 --port 30003 "
    "--mem-fraction-static 0.1 --context-length 8192 --dtype bfloat16 --is-embedding",
    "python -m sglang.launch_server --model-path runs/router/skywork-1.5b --host 127.0.0.1 --port 30004 "
    "--mem-fraction-static 0.1 --context-length 8192 --dtype bfloat16 --is-embedding",
]

QWEN_COMMANDS = [
    "CUDA_VISIBLE_DEVICES=0 python -m sglang.launch_server --model-path Qwen/Qwen2.5-Math-7B-Instruct --host 127.0.0.1 "
    "--port 30011 --mem-fraction-static 0.85 --context-length 4096 --dtype bfloat16 --quantization fp8",
    "CUDA_VISIBLE_DEVICES=1 python -m sglang.launch_server --model-path Qwen/Qwen2.5-Math-7B-Instruct --host 127.0.0.1 "
    "--port 30012 --mem-fraction-static 0.85 --context-length 4096 --dtype bfloat16",
    "CUDA_VISIBLE_DEVICES=2 python -m sglang.launch_server --model-path Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B "
    "--host 127.0.0.1 --port 30013 --mem-fraction-static 0.4 --context-length 4096 --dtype bfloat16 --is-embedding",
    "CUDA_VISIBLE_DEVICES=2 python -m sglang.launch_server --model-path runs/router/skywork-1.5b --host 127.0.0.1 "
    "--port 30014 --mem-fraction-static 0.4 --context-length 4096 --dtype bfloat16 --is-embedding",
]


def _dry_run(*args: str) -> list[str]:
    result = CliRunner().invoke(_standalone_app(), ["servers", "launch", "--dry-run", "--python", "python", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()


def test_dry_run_prints_the_exact_llama_commands():
    assert _dry_run("--config", str(EXAMPLES / "sglang_llama.yaml")) == LLAMA_COMMANDS


def test_dry_run_prints_the_exact_qwen_commands_for_chosen_roles():
    assert _dry_run("--config", str(EXAMPLES / "sglang_qwen_math.yaml")) == QWEN_COMMANDS
    assert _dry_run("--config", str(EXAMPLES / "sglang_qwen_math.yaml"), "--roles", "target,prm") == QWEN_COMMANDS[1:3]
    assert _dry_run("--config", str(EXAMPLES / "sglang_qwen_math.yaml"), "--roles", "router", "--roles", "draft") == [
        QWEN_COMMANDS[3],
        QWEN_COMMANDS[0],
    ]


def test_tp_dp_extra_args_and_flags():
    config = validate_config(
        {
            "models": {
                "target": {
                    "backend": "openai",
                    "path": "/models/big",
                    "model": "big",
                    "base_url": "http://127.0.0.1:31000/",
                    "trust_remote_code": True,
                    "launch": {"port": 31000, "tp": 4, "dp": 2, "extra_args": ["--enable-metrics"]},
                }
            }
        }
    )
    (spec,) = launch_specs(config, ["target"], python="py")
    assert spec.argv == [
        "py", "-m", "sglang.launch_server", "--model-path", "/models/big", "--served-model-name", "big",
        "--host", "127.0.0.1", "--port", "31000", "--tp-size", "4", "--dp-size", "2",
        "--trust-remote-code", "--enable-metrics",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "models, message",
    [
        ({"draft": {"backend": "openai", "path": "m", "base_url": "http://127.0.0.1:1/", "launch": {"port": 2}}}, "does not point at"),
        ({"draft": {"path": "m", "launch": {"port": 2}}}, "backend: openai"),
        ({"draft": {"backend": "openai", "path": "m", "base_url": "http://127.0.0.1:2"}}, "no model in the config has a launch"),
        (
            {
                "draft": {"backend": "openai", "path": "m", "base_url": "http://127.0.0.1:2", "launch": {"port": 2}},
                "target": {"backend": "openai", "path": "m", "base_url": "http://127.0.0.1:2", "launch": {"port": 2}},
            },
            "port 2 is used by draft and target",
        ),
    ],
)
def test_launch_config_errors_name_the_field(models, message):
    with pytest.raises(ConfigError, match=message):
        launch_specs(validate_config({"models": models}))


def test_unknown_role_and_missing_launch_section():
    config = load_config(EXAMPLES / "sglang_llama.yaml")
    with pytest.raises(ConfigError, match="unknown role 'critic'"):
        launch_specs(config, ["critic"])
    with pytest.raises(ConfigError, match="models.draft has no launch"):
        launch_specs(validate_config({"models": {"draft": {"backend": "openai", "path": "m", "base_url": "http://x:1"}}}), ["draft"])


def test_config_rejects_bad_launch_values():
    with pytest.raises(ConfigError, match="launch.mem_fraction_static"):
        validate_config({"models": {"draft": {"path": "m", "launch": {"port": 1, "mem_fraction_static": 1.5}}}})
    with pytest.raises(ConfigError, match="launch.port"):
        validate_config({"models": {"draft": {"path": "m", "launch": {}}}})


# ---- process management, with a stand-in for sglang ----

STAND_IN = textwrap.dedent(
    """
    import http.server, json, os, signal, subprocess, sys, time
    port, ready_after, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    if mode == "crash":
        print("stand-in: model failed to load", flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(sys.argv[4], "w").write(str(child.pid))
    if mode == "quiet":  # a node rank above 0: schedulers only, no HTTP
        print("stand-in: rank without HTTP", flush=True)
        time.sleep(600)
    start = time.monotonic()
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/health" and time.monotonic() - start >= ready_after and mode != "never"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def do_POST(self):
            # /v1/completions as sglang and vLLM answer it, naming this replica in the text.
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"id": "cmpl-1", "object": "text_completion", "model": "m",
                               "choices": [{"index": 0, "text": f"replica {port}", "finish_reason": "stop"}]}).encode()
            self.send_response(200 if self.path == "/v1/completions" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    print("stand-in listening", port, flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z"


def _gone(pid: int, within_s: float = 3.0) -> bool:
    """True once `pid` has exited: a signal to a process group reaches its members one by
    one, so a grandchild may outlive the leader by a moment."""
    deadline = time.monotonic() + within_s
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def stand_in(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    managers: list[ServerManager] = []

    def make(role: str, mode: str = "ok", ready_after: float = 0.3, *, name: str | None = None, port: int | None = None) -> tuple[LaunchSpec, Path]:
        name = name or role
        child_pid_file = tmp_path / f"{name}.child"
        port = port or _free_port()
        argv = [sys.executable, str(script), str(port), str(ready_after), mode, str(child_pid_file)]
        ready_path = None if mode == "quiet" else "/health"
        return LaunchSpec(name, role, argv, {"STAND_IN": "1"}, "127.0.0.1", port, ready_path), child_pid_file

    def manager() -> ServerManager:
        created = ServerManager(tmp_path / "run", poll_s=0.05, settle_s=1.0)
        managers.append(created)
        return created

    yield make, manager
    for created in managers:  # never leave a process behind
        created.stop(grace_s=1.0)


@pytest.mark.server
def test_launch_waits_for_health_then_status_and_stop(stand_in):
    make, manager = stand_in
    servers = manager()
    (draft, draft_child), (prm, _) = make("draft"), make("prm", ready_after=0.6)
    started = time.monotonic()
    records = servers.launch([draft, prm], deadline_s=20)
    assert time.monotonic() - started >= 0.6  # waited for the slower one
    run_dir = servers.run_dir
    assert (run_dir / "draft.pid").read_text().strip() == str(records[0].pid)
    assert "stand-in listening" in (run_dir / "draft.log").read_text()
    assert [(s.role, s.running, s.healthy) for s in servers.status()] == [("draft", True, True), ("prm", True, True)]

    child = int(draft_child.read_text())
    assert servers.stop(["draft"], grace_s=5) == ["draft"]
    assert not _alive(records[0].pid) and _gone(child)  # the whole process group ended
    assert not (run_dir / "draft.pid").exists()
    assert [s.role for s in servers.status()] == ["prm"]
    assert servers.stop() == ["prm"]
    assert servers.status() == []


@pytest.mark.server
def test_refuses_a_second_start_and_a_busy_port(stand_in):
    make, manager = stand_in
    servers = manager()
    spec, _ = make("target")
    servers.launch([spec], deadline_s=20)
    with pytest.raises(LaunchError, match="already running"):
        servers.start(spec)
    other = LaunchSpec("router", "router", spec.argv, {}, "127.0.0.1", spec.port)
    with pytest.raises(LaunchError, match=f"port {spec.port} .* already in use"):
        servers.start(other)


@pytest.mark.server
def test_a_crashing_server_fails_fast_with_its_log(stand_in):
    make, manager = stand_in
    spec, _ = make("draft", mode="crash")
    started = time.monotonic()
    with pytest.raises(LaunchError, match="exited before it was ready(.|\n)*model failed to load"):
        manager().launch([spec], deadline_s=30)
    assert time.monotonic() - started < 10


@pytest.mark.server
def test_deadline_stops_every_server_started_by_the_call(stand_in):
    make, manager = stand_in
    servers = manager()
    (good, _), (stuck, stuck_child) = make("draft"), make("target", mode="never")
    with pytest.raises(LaunchError, match="target: not ready within 1.5s"):
        servers.launch([good, stuck], deadline_s=1.5)
    assert servers.status() == []
    assert _gone(int(stuck_child.read_text()))


@pytest.mark.server
def test_stop_escalates_to_sigkill(stand_in):
    make, manager = stand_in
    servers = manager()
    spec, child_file = make("prm", mode="stubborn")
    (record,) = servers.launch([spec], deadline_s=20)
    started = time.monotonic()
    servers.stop(grace_s=0.5)
    stop_s = time.monotonic() - started
    assert not _alive(record.pid) and _gone(int(child_file.read_text()))
    assert stop_s < 5


@pytest.mark.server
def test_cli_status_and_stop(stand_in, tmp_path):
    make, manager = stand_in
    servers = manager()
    spec, _ = make("router")
    servers.launch([spec], deadline_s=20)
    runner = CliRunner()
    status = runner.invoke(_standalone_app(), ["servers", "status", "--run-dir", str(servers.run_dir)])
    assert status.exit_code == 0 and "router" in status.output and "yes" in status.output
    stop = runner.invoke(_standalone_app(), ["servers", "stop", "--run-dir", str(servers.run_dir)])
    assert stop.exit_code == 0 and "stopped: router" in stop.output


@pytest.mark.server
def test_replicas_behind_the_real_sglang_router_start_route_and_stop(stand_in):
    pytest.importorskip("sglang_router", reason="sglang-router is a test dependency: pip install -e '.[test]'")
    make, manager = stand_in
    ports, balancer_port = [_free_port(), _free_port()], _free_port()
    base_url = f"http://127.0.0.1:{balancer_port}"
    launch = {"port": ports[0], "ports": ports, "replicas": 2, "balancer_port": balancer_port, "balancer_policy": "round_robin"}
    config = validate_config({"models": {"draft": {"backend": "openai", "path": "m", "base_url": base_url, "launch": launch}}})
    *engine_specs, balancer = launch_specs(config, python=sys.executable)
    # sglang itself needs a GPU: stand-ins take the replicas' names and ports. The router is
    # the real sglang-router, started from the command the config produced.
    assert balancer.name == "draft.balancer" and balancer.argv[1:3] == ["-m", "sglang_router.launch_router"]
    replicas = [make("draft", name=spec.name, port=spec.port)[0] for spec in engine_specs]
    servers = manager()
    records = servers.launch([*replicas, balancer], deadline_s=60)
    assert [record.name for record in records] == ["draft.0", "draft.1", "draft.balancer"]
    assert [(status.name, status.running, status.healthy) for status in servers.status()] == [
        ("draft.0", True, True), ("draft.1", True, True), ("draft.balancer", True, True),
    ]  # fmt: skip

    texts = {
        httpx.post(f"{base_url}/v1/completions", json={"model": "m", "prompt": f"problem {i}", "max_tokens": 4}, timeout=30)
        .json()["choices"][0]["text"]
        for i in range(4)
    }
    assert texts == {f"replica {port}" for port in ports}  # round robin reached both replicas
    # Why PRM and router roles are not replicated: the router does not forward /classify.
    assert httpx.post(f"{base_url}/classify", json={"model": "m", "text": "x"}, timeout=30).status_code == 404

    assert servers.stop(grace_s=10) == ["draft.balancer", "draft.0", "draft.1"]
    assert not any(_alive(record.pid) for record in records)
    assert servers.status() == []


@pytest.mark.server
def test_routers_start_only_after_their_replicas_are_ready(stand_in):
    make, manager = stand_in
    servers = manager()
    replicas = [make("target", name=f"target.{i}", ready_after=0.8)[0] for i in range(2)]
    router, _ = make("target", name="target.balancer")  # speaks the same readiness contract
    records = {record.name: record for record in servers.launch([router, *replicas], deadline_s=20)}
    first_replica = min(records[f"target.{i}"].started_at for i in range(2))
    assert records["target.balancer"].started_at >= first_replica + 0.8
    assert servers.stop(["target"], grace_s=5) == ["target.balancer", "target.0", "target.1"]


@pytest.mark.server
def test_a_rank_without_http_only_has_to_stay_alive(stand_in):
    make, manager = stand_in
    servers = manager()
    spec, child = make("target", mode="quiet")
    started = time.monotonic()
    (record,) = servers.launch([spec], deadline_s=20)
    assert record.ready_url is None and time.monotonic() - started >= 1.0  # watched for settle_s
    (status,) = servers.status()
    assert status.running and status.healthy is None
    table = CliRunner().invoke(_standalone_app(), ["servers", "status", "--run-dir", str(servers.run_dir)])
    assert table.exit_code == 0 and "target" in table.output and " - " in table.output
    servers.stop(grace_s=5)
    assert not _alive(record.pid) and _gone(int(child.read_text()))


@pytest.mark.server
def test_a_rank_without_http_that_dies_fails_the_launch(stand_in):
    make, manager = stand_in
    spec, _ = make("target", mode="crash")
    with pytest.raises(LaunchError, match="target: the server exited before it was ready(.|\n)*model failed to load"):
        manager().launch([dataclasses.replace(spec, ready_path=None)], deadline_s=20)


def test_cli_bad_input_exits_2_and_paths_print_verbatim(tmp_path):
    runner = CliRunner()
    bad_role = runner.invoke(_standalone_app(), ["serve", "--config", str(EXAMPLES / "lab.yaml"), "--role", "critic", "--port", "0"])
    assert bad_role.exit_code == 2 and "--role must be draft, target, prm or router, got 'critic'" in bad_role.output
    bracketed = tmp_path / "[run]"
    status = runner.invoke(_standalone_app(), ["servers", "status", "--run-dir", str(bracketed)])
    assert status.exit_code == 0 and f"no servers recorded under {bracketed}" in " ".join(status.output.split())
