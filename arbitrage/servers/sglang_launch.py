"""sglang servers for the config's models: build each role's launch command, start it,
wait on its health endpoint against a deadline, keep its log and pid file, report status,
stop it.

Commands use sglang's ServerArgs flags (python/sglang/srt/server_args.py: `--model-path`,
`--host`, `--port`, `--tp-size`, `--dp-size`, `--mem-fraction-static`,
`--context-length`, `--is-embedding`, ...). PRM and router roles are reward/classifier
models, so they get `--is-embedding` and are read through `/classify`. sglang answers
`GET /health` with 200 once it can serve (503 while starting).

Each server runs in its own session (process group), so stopping it also ends the
scheduler and detokenizer processes sglang forks. A pid file is only acted on while the
process it names is the one we started (same start time), never a recycled pid.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

from arbitrage.config import Config, ConfigError, ModelConfig

LAUNCH_HOST = "127.0.0.1"
SCORING_ROLES = ("prm", "router")
ROLES = ("draft", "target", "prm", "router")


class LaunchError(RuntimeError):
    """A server did not start or stop as asked; the message says which and why."""


@dataclass(frozen=True)
class LaunchSpec:
    role: str
    argv: list[str]
    env: dict[str, str]
    port: int

    @property
    def health_url(self) -> str:
        return f"http://{LAUNCH_HOST}:{self.port}/health"

    def shell(self) -> str:
        """The command as one shell line, environment first."""
        env = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


def build_command(role: str, model_cfg: ModelConfig, *, python: str = sys.executable) -> list[str]:
    launch = model_cfg.launch
    if launch is None:
        raise ConfigError(f"models.{role} has no launch: section")
    argv = [python, "-m", "sglang.launch_server", "--model-path", model_cfg.path]
    if model_cfg.model:
        argv += ["--served-model-name", model_cfg.model]
    argv += ["--host", LAUNCH_HOST, "--port", str(launch.port)]
    if launch.tp != 1:
        argv += ["--tp-size", str(launch.tp)]
    if launch.dp != 1:
        argv += ["--dp-size", str(launch.dp)]
    if launch.mem_fraction_static is not None:
        argv += ["--mem-fraction-static", f"{launch.mem_fraction_static:g}"]
    if launch.context_length is not None:
        argv += ["--context-length", str(launch.context_length)]
    # float32 is the config default for CPU; on a GPU server sglang's own choice is better.
    if model_cfg.dtype in ("bfloat16", "float16"):
        argv += ["--dtype", model_cfg.dtype]
    if model_cfg.trust_remote_code:
        argv.append("--trust-remote-code")
    if role in SCORING_ROLES:
        argv.append("--is-embedding")
    return argv + list(launch.extra_args)


def launch_specs(config: Config, roles: list[str] | None = None, *, python: str = sys.executable) -> list[LaunchSpec]:
    """Specs for `roles`, or for every role with a launch: section."""
    if roles:
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise ConfigError(f"unknown role {unknown[0]!r}; choose from {', '.join(ROLES)}")
        wanted = list(dict.fromkeys(roles))
    else:
        wanted = [role for role in ROLES if (cfg := config.models.get(role)) is not None and cfg.launch is not None]
        if not wanted:
            raise ConfigError("no model in the config has a launch: section")
    specs = []
    for role in wanted:
        model_cfg = config.models.get(role)
        if model_cfg is None:
            raise ConfigError(f"the config has no models.{role}")
        if model_cfg.launch is None:
            raise ConfigError(f"models.{role} has no launch: section")
        _check_base_url(role, model_cfg)
        specs.append(LaunchSpec(role, build_command(role, model_cfg, python=python), dict(model_cfg.launch.env), model_cfg.launch.port))
    ports = [spec.port for spec in specs]
    for spec in specs:
        if ports.count(spec.port) > 1:
            raise ConfigError(f"models.{spec.role}.launch.port {spec.port} is used by another role too")
    return specs


def _check_base_url(role: str, model_cfg: ModelConfig) -> None:
    if model_cfg.backend != "openai" or not model_cfg.base_url:
        raise ConfigError(f"models.{role} must use backend: openai with a base_url to talk to the server it launches")
    parsed = urlparse(model_cfg.base_url)
    if parsed.port != model_cfg.launch.port:
        raise ConfigError(
            f"models.{role}.base_url {model_cfg.base_url} does not point at models.{role}.launch.port {model_cfg.launch.port}"
        )


@dataclass
class ServerRecord:
    role: str
    pid: int
    port: int
    argv: list[str]
    log: str
    health_url: str
    started_at: float
    start_ticks: int | None = None

    @classmethod
    def read(cls, path: Path) -> "ServerRecord":
        return cls(**json.loads(path.read_text()))


@dataclass
class ServerStatus:
    role: str
    pid: int
    port: int
    running: bool
    healthy: bool
    log: str
    detail: str = ""


@dataclass
class ServerManager:
    """Servers started from this run dir: `<role>.json` (record), `<role>.pid`, `<role>.log`."""

    run_dir: Path
    poll_s: float = 1.0
    _started: list[ServerRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    def launch(self, specs: list[LaunchSpec], *, deadline_s: float = 900.0) -> list[ServerRecord]:
        """Start every server, then wait until all are healthy; on any failure stop the ones
        this call started and raise."""
        records = []
        try:
            for spec in specs:
                records.append(self.start(spec))
            self.wait_healthy(records, deadline_s=deadline_s)
        except BaseException:
            for record in records:
                self._stop_record(record, grace_s=10.0)
            raise
        return records

    def start(self, spec: LaunchSpec) -> ServerRecord:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        existing = self._record_path(spec.role)
        if existing.exists():
            record = ServerRecord.read(existing)
            if _is_running(record):
                raise LaunchError(f"{spec.role}: already running as pid {record.pid} (see {existing}); stop it first")
            self._forget(spec.role)
        if _port_in_use(spec.port):
            raise LaunchError(f"{spec.role}: port {spec.port} on {LAUNCH_HOST} is already in use")
        log_path = self.run_dir / f"{spec.role}.log"
        with open(log_path, "ab") as log_file:
            log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.shell()}\n".encode())
            log_file.flush()
            try:
                process = subprocess.Popen(
                    spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **spec.env},
                    start_new_session=True,
                )
            except OSError as error:
                raise LaunchError(f"{spec.role}: could not start {spec.argv[0]!r}: {error}") from None
        record = ServerRecord(
            role=spec.role,
            pid=process.pid,
            port=spec.port,
            argv=spec.argv,
            log=str(log_path),
            health_url=spec.health_url,
            started_at=time.time(),
            start_ticks=_start_ticks(process.pid),
        )
        self._record_path(spec.role).write_text(json.dumps(asdict(record), indent=2))
        (self.run_dir / f"{spec.role}.pid").write_text(f"{process.pid}\n")
        return record

    def wait_healthy(self, records: list[ServerRecord], *, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        waiting = list(records)
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while waiting:
                for record in list(waiting):
                    if not _is_running(record):
                        raise LaunchError(f"{record.role}: the server exited before it was healthy; log tail:\n{_tail(record.log)}")
                    if _healthy(client, record.health_url):
                        waiting.remove(record)
                if not waiting:
                    return
                if time.monotonic() >= deadline:
                    roles = ", ".join(record.role for record in waiting)
                    raise LaunchError(
                        f"{roles}: not healthy within {deadline_s:g}s; log tail of {waiting[0].role}:\n{_tail(waiting[0].log)}"
                    )
                time.sleep(self.poll_s)

    def records(self) -> list[ServerRecord]:
        if not self.run_dir.is_dir():
            return []
        order = {role: index for index, role in enumerate(ROLES)}
        found = [ServerRecord.read(path) for path in self.run_dir.glob("*.json")]
        return sorted(found, key=lambda record: order.get(record.role, len(order)))

    def status(self) -> list[ServerStatus]:
        statuses = []
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            for record in self.records():
                running = _is_running(record)
                healthy = running and _healthy(client, record.health_url)
                detail = "" if running else "not running (stale record)"
                statuses.append(ServerStatus(record.role, record.pid, record.port, running, healthy, record.log, detail))
        return statuses

    def stop(self, roles: list[str] | None = None, *, grace_s: float = 30.0) -> list[str]:
        """Stop the recorded servers (all, or `roles`); returns the roles stopped."""
        stopped = []
        for record in self.records():
            if roles and record.role not in roles:
                continue
            self._stop_record(record, grace_s=grace_s)
            stopped.append(record.role)
        return stopped

    def _stop_record(self, record: ServerRecord, *, grace_s: float) -> None:
        if _is_running(record):
            _signal_group(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _is_running(record) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _is_running(record):
                _signal_group(record.pid, signal.SIGKILL)
                deadline = time.monotonic() + 5.0
                while _is_running(record) and time.monotonic() < deadline:
                    time.sleep(0.1)
            if _is_running(record):
                raise LaunchError(f"{record.role}: pid {record.pid} did not exit after SIGKILL")
        self._forget(record.role)

    def _record_path(self, role: str) -> Path:
        return self.run_dir / f"{role}.json"

    def _forget(self, role: str) -> None:
        for suffix in (".json", ".pid"):
            (self.run_dir / f"{role}{suffix}").unlink(missing_ok=True)


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks (Linux), to tell our process from a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])


def _is_running(record: ServerRecord) -> bool:
    try:
        # Reap it if it is our own exited child, so it does not linger as a zombie.
        if os.waitpid(record.pid, os.WNOHANG)[0] == record.pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # a pid we cannot signal is not a process we started
    state = _proc_state(record.pid)
    if state == "Z":
        return False
    if record.start_ticks is not None and _start_ticks(record.pid) not in (None, record.start_ticks):
        return False
    return True


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the server leads its own session, so its group id is its pid
    except ProcessLookupError:
        pass


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LAUNCH_HOST, port)) == 0


def _tail(path: str, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
