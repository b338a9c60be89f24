"""`arbitrage servers launch`: sglang and vLLM servers for the config's models, replicas
behind sglang-router, multi-node ranks; the process manager that starts, polls, reports
and stops them. docs/SERVING.md is the user guide."""

from arbitrage.servers.launch.manager import ServerManager, ServerRecord, ServerStatus
from arbitrage.servers.launch.plan import launch_specs, network_warnings
from arbitrage.servers.launch.spec import LaunchError, LaunchSpec

__all__ = [
    "LaunchError",
    "LaunchSpec",
    "ServerManager",
    "ServerRecord",
    "ServerStatus",
    "launch_specs",
    "network_warnings",
]
