"""One process to start (its command, environment, address and readiness probe), and the
rules every engine command shares."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

SCORING_ROLES = ("prm", "router")
ROLES = ("draft", "target", "prm", "router")
BALANCER = "balancer"


def engine_dtype(dtype: str) -> str | None:
    """The --dtype to pass: half precisions as configured; float32, the config's CPU default,
    and auto are left to the engine, whose choice on a GPU is better."""
    return dtype if dtype in ("bfloat16", "float16") else None


class LaunchError(RuntimeError):
    """A server did not start or stop as asked; the message says which and why."""


@dataclass(frozen=True)
class LaunchSpec:
    """`name` is the role for a lone server, `role.N` for replica N and `role.balancer` for
    the sglang-router in front of the replicas. `ready_path` is probed on `connect_host`
    (None: the process serves no HTTP, as on node ranks above 0)."""

    name: str
    role: str
    argv: list[str]
    env: dict[str, str]
    host: str
    port: int
    ready_path: str | None = "/health"

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches the server (a wildcard bind means loopback)."""
        return loopback_for(self.host)

    @property
    def ready_url(self) -> str | None:
        if self.ready_path is None:
            return None
        return f"{http_origin(self.connect_host, self.port)}{self.ready_path}"

    def shell(self) -> str:
        """The command as one shell line, environment first."""
        env = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_for(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host.strip("[]") == "::":
        return "::1"
    return host


def http_origin(host: str, port: int) -> str:
    bare = host.strip("[]")
    if ":" in bare:  # IPv6 literal
        return f"http://[{bare}]:{port}"
    return f"http://{bare}:{port}"
