"""Start, watch and stop the launched servers: each in its own process group, with a log
file, a pid file and a JSON record under the run dir, named after the spec
(`draft`, `draft.0`, `draft.balancer`, ...).

`launch` starts the engine servers first and waits until each answers its readiness probe
(`GET /health` 200; sglang answers 503 while starting, vLLM does not listen until its
engine runs), then starts the sglang-routers in front of replicas and waits for their
`/readiness`, so a router never starts against workers that are still loading. A process
without a probe (a node rank above 0, which serves no HTTP) has to stay alive for
`settle_s`; it keeps waiting for node 0 after that, which `status` shows as running.

Each server leads its own session, so stopping it also ends the scheduler and worker
processes the engines fork. A pid file is only acted on while the process it names is the
one we started (same start time), never a recycled pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from arbitrage.servers.launch.spec import BALANCER, ROLES, LaunchError, LaunchSpec


@dataclass
class ServerRecord:
    name: str
    role: str
    pid: int
    host: str
    port: int
    argv: list[str]
    log: str
    ready_url: str | None
    started_at: float
    start_ticks: int | None = None

    @classmethod
    def read(cls, path: Path) -> "ServerRecord":
        data = json.loads(path.read_text())
        # Records written before replicas existed: one server per role, probed on /health.
        data.setdefault("name", data["role"])
        data.setdefault("host", "127.0.0.1")
        if "health_url" in data:
            data["ready_url"] = data.pop("health_url")
        return cls(**data)

    @property
    def is_balancer(self) -> bool:
        return self.name.endswith(f".{BALANCER}")


@dataclass
class ServerStatus:
    name: str
    role: str
    pid: int
    port: int
    running: bool
    healthy: bool | None  # None: the process serves no HTTP to probe
    log: str
    detail: str = ""


@dataclass
class ServerManager:
    """Servers started from this run dir: `<name>.json` (record), `<name>.pid`, `<name>.log`."""

    run_dir: Path
    poll_s: float = 1.0
    settle_s: float = 10.0

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    def launch(self, specs: list[LaunchSpec], *, deadline_s: float = 900.0) -> list[ServerRecord]:
        """Start every server and wait until all are ready (engine servers, then the
        balancers in front of them); on any failure stop the ones this call started and raise."""
        deadline = time.monotonic() + deadline_s
        records: list[ServerRecord] = []
        try:
            for phase in (
                [spec for spec in specs if not spec.name.endswith(f".{BALANCER}")],
                [spec for spec in specs if spec.name.endswith(f".{BALANCER}")],
            ):
                started = [self.start(spec) for spec in phase]
                records += started
                self.wait_ready(started, deadline=deadline, deadline_s=deadline_s)
        except BaseException:
            for record in sorted(records, key=lambda record: not record.is_balancer):
                self._stop_record(record, grace_s=10.0)
            raise
        return records

    def start(self, spec: LaunchSpec) -> ServerRecord:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        existing = self._record_path(spec.name)
        if existing.exists():
            record = ServerRecord.read(existing)
            if _is_running(record):
                raise LaunchError(f"{spec.name}: already running as pid {record.pid} (see {existing}); stop it first")
            self._forget(spec.name)
        if spec.ready_path is not None and _port_in_use(spec.connect_host, spec.port):
            raise LaunchError(f"{spec.name}: port {spec.port} on {spec.connect_host} is already in use")
        log_path = self.run_dir / f"{spec.name}.log"
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
                raise LaunchError(f"{spec.name}: could not start {spec.argv[0]!r}: {error}") from None
        record = ServerRecord(
            name=spec.name,
            role=spec.role,
            pid=process.pid,
            host=spec.host,
            port=spec.port,
            argv=spec.argv,
            log=str(log_path),
            ready_url=spec.ready_url,
            started_at=time.time(),
            start_ticks=_start_ticks(process.pid),
        )
        self._record_path(spec.name).write_text(json.dumps(asdict(record), indent=2))
        (self.run_dir / f"{spec.name}.pid").write_text(f"{process.pid}\n")
        return record

    def wait_ready(self, records: list[ServerRecord], *, deadline: float, deadline_s: float) -> None:
        waiting = [record for record in records if record.ready_url is not None]
        # A process without a probe has to stay alive for settle_s (or until the deadline).
        settle_until = min(time.monotonic() + self.settle_s, deadline) if len(waiting) < len(records) else 0.0
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while True:
                for record in records:
                    if not _is_running(record):
                        raise LaunchError(f"{record.name}: the server exited before it was ready; log tail:\n{_tail(record.log)}")
                waiting = [record for record in waiting if not _answers_200(client, record.ready_url)]
                if not waiting and time.monotonic() >= settle_until:
                    return
                if waiting and time.monotonic() >= deadline:
                    names = ", ".join(record.name for record in waiting)
                    raise LaunchError(
                        f"{names}: not ready within {deadline_s:g}s; log tail of {waiting[0].name}:\n{_tail(waiting[0].log)}"
                    )
                time.sleep(self.poll_s)

    def records(self) -> list[ServerRecord]:
        if not self.run_dir.is_dir():
            return []
        found = [ServerRecord.read(path) for path in self.run_dir.glob("*.json")]
        return sorted(found, key=_display_order)

    def status(self) -> list[ServerStatus]:
        statuses = []
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            for record in self.records():
                running = _is_running(record)
                if record.ready_url is None:
                    healthy = None
                else:
                    healthy = running and _answers_200(client, record.ready_url)
                detail = "" if running else "not running (stale record)"
                statuses.append(ServerStatus(record.name, record.role, record.pid, record.port, running, healthy, record.log, detail))
        return statuses

    def stop(self, roles: list[str] | None = None, *, grace_s: float = 30.0) -> list[str]:
        """Stop the recorded servers (all, or those of `roles`, which may also name single
        servers such as `draft.1`); balancers go first. Returns the names stopped."""
        chosen = [record for record in self.records() if not roles or record.role in roles or record.name in roles]
        stopped = []
        for record in sorted(chosen, key=lambda record: not record.is_balancer):
            self._stop_record(record, grace_s=grace_s)
            stopped.append(record.name)
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
                raise LaunchError(f"{record.name}: pid {record.pid} did not exit after SIGKILL")
        self._forget(record.name)

    def _record_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _forget(self, name: str) -> None:
        for suffix in (".json", ".pid"):
            (self.run_dir / f"{name}{suffix}").unlink(missing_ok=True)


def _display_order(record: ServerRecord) -> tuple:
    role_index = ROLES.index(record.role) if record.role in ROLES else len(ROLES)
    suffix = record.name[len(record.role) + 1 :]
    return (role_index, record.is_balancer, int(suffix) if suffix.isdigit() else -1, record.name)


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


def _answers_200(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(address) == 0


def _tail(path: str, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
