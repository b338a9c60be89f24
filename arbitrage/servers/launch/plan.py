"""From a config to the processes to start: one server per role, or N replicas on their
own ports and GPUs behind an sglang-router, or this machine's rank of a multi-node
server. Checks what each launch needs from the rest of the role's config (api, base_url)
and that no two processes share a port."""

from __future__ import annotations

import sys
from urllib.parse import urlparse

from pydantic import ValidationError

from arbitrage.config import Config, ConfigError, LaunchConfig, ModelConfig
from arbitrage.servers.launch.balancer import READY_PATH as BALANCER_READY_PATH
from arbitrage.servers.launch.balancer import balancer_command
from arbitrage.servers.launch.sglang import sglang_command
from arbitrage.servers.launch.spec import BALANCER, ROLES, SCORING_ROLES, LaunchSpec, http_origin, is_loopback
from arbitrage.servers.launch.vllm import vllm_command

ENGINE_COMMANDS = {"sglang": sglang_command, "vllm": vllm_command}


def launch_specs(
    config: Config, roles: list[str] | None = None, *, python: str = sys.executable, node_rank: int | None = None
) -> list[LaunchSpec]:
    """Specs for `roles`, or for every role with a launch: section. `node_rank` overrides
    launch.node_rank of the multi-node roles; above 0 and without `roles` it picks only
    those roles, since single-node servers run on node 0."""
    specs: list[LaunchSpec] = []
    for role in _wanted_roles(config, roles, node_rank):
        model_cfg = config.models.get(role)
        launch = _on_node(role, model_cfg.launch, node_rank)
        _check_api(role, model_cfg, launch)
        _check_base_url(role, model_cfg, launch)
        specs += role_specs(role, model_cfg, launch, python=python)
    _check_ports(specs)
    return specs


def role_specs(role: str, model_cfg: ModelConfig, launch: LaunchConfig, *, python: str) -> list[LaunchSpec]:
    command = ENGINE_COMMANDS[launch.engine]
    if launch.replicas == 1:
        env = dict(launch.env)
        if launch.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, launch.gpus))
        argv = command(role, model_cfg, launch, host=launch.host, port=launch.port, python=python)
        # Node ranks above 0 serve no HTTP: there is nothing to poll, only a process to watch.
        ready_path = "/health" if launch.node_rank == 0 else None
        return [LaunchSpec(role, role, argv, env, launch.host, launch.port, ready_path)]

    if role in SCORING_ROLES:
        raise ConfigError(
            f"models.{role}.launch.replicas {launch.replicas}: sglang-router has no /classify or /pooling route, "
            f"which {role} scoring uses; serve one {role} server and scale it with launch.dp"
        )
    # Only the balancer faces clients; replicas listen on loopback for it.
    replica_host = launch.host if is_loopback(launch.host) else "127.0.0.1"
    per_server = launch.gpus_per_server()
    gpus = launch.gpus if launch.gpus is not None else list(range(launch.replicas * per_server))
    specs = []
    for index, port in enumerate(launch.replica_ports()):
        mine = gpus[index * per_server : (index + 1) * per_server]
        env = {**launch.env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, mine))}
        argv = command(role, model_cfg, launch, host=replica_host, port=port, python=python)
        specs.append(LaunchSpec(f"{role}.{index}", role, argv, env, replica_host, port))
    worker_urls = [http_origin(spec.connect_host, spec.port) for spec in specs]
    argv = balancer_command(worker_urls, host=launch.host, port=launch.balancer_port, policy=launch.balancer_policy, python=python)
    specs.append(LaunchSpec(f"{role}.{BALANCER}", role, argv, {}, launch.host, launch.balancer_port, BALANCER_READY_PATH))
    return specs


def network_warnings(specs: list[LaunchSpec]) -> list[str]:
    """One line per server that listens beyond this machine."""
    return [
        f"warning: {spec.name} listens on {spec.host}:{spec.port}, which is reachable from the network "
        f"(models.{spec.role}.launch.host); the server has no authentication"
        for spec in specs
        if spec.ready_path is not None and not is_loopback(spec.host)
    ]


def _wanted_roles(config: Config, roles: list[str] | None, node_rank: int | None) -> list[str]:
    if roles:
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise ConfigError(f"unknown role {unknown[0]!r}; choose from {', '.join(ROLES)}")
        wanted = list(dict.fromkeys(roles))
        for role in wanted:
            model_cfg = config.models.get(role)
            if model_cfg is None:
                raise ConfigError(f"the config has no models.{role}")
            if model_cfg.launch is None:
                raise ConfigError(f"models.{role} has no launch: section")
        return wanted
    wanted = [role for role in ROLES if (cfg := config.models.get(role)) is not None and cfg.launch is not None]
    if not wanted:
        raise ConfigError("no model in the config has a launch: section")
    if node_rank:
        wanted = [role for role in wanted if config.models.get(role).launch.nnodes > 1]
        if not wanted:
            raise ConfigError(f"--node-rank {node_rank}: no model in the config has launch.nnodes above 1")
    return wanted


def _on_node(role: str, launch: LaunchConfig, node_rank: int | None) -> LaunchConfig:
    if node_rank is None:
        return launch
    if launch.nnodes == 1:
        if node_rank > 0:
            raise ConfigError(f"--node-rank {node_rank}: models.{role}.launch.nnodes is 1, so {role} runs on node 0 only")
        return launch
    try:
        return LaunchConfig.model_validate({**launch.model_dump(), "node_rank": node_rank})
    except ValidationError as error:
        reasons = "; ".join(item["msg"] for item in error.errors())
        raise ConfigError(f"--node-rank {node_rank} for models.{role}.launch: {reasons}") from None


def _check_api(role: str, model_cfg: ModelConfig, launch: LaunchConfig) -> None:
    if model_cfg.api != launch.engine:
        raise ConfigError(
            f"models.{role}.api is {model_cfg.api!r} but models.{role}.launch.engine is {launch.engine!r}: "
            f"the client must speak the launched server's wire format, set api: {launch.engine}"
        )


def _check_base_url(role: str, model_cfg: ModelConfig, launch: LaunchConfig) -> None:
    if model_cfg.backend != "openai" or not model_cfg.base_url:
        raise ConfigError(f"models.{role} must use backend: openai with a base_url to talk to the server it launches")
    parsed = urlparse(model_cfg.base_url)
    if launch.replicas > 1:
        if parsed.port in launch.replica_ports():
            raise ConfigError(
                f"models.{role}.base_url {model_cfg.base_url} points at a replica; point it at "
                f"models.{role}.launch.balancer_port {launch.balancer_port} (the sglang-router in front of the replicas)"
            )
        if parsed.port != launch.balancer_port:
            raise ConfigError(
                f"models.{role}.base_url {model_cfg.base_url} does not point at models.{role}.launch.balancer_port {launch.balancer_port}"
            )
    elif parsed.port != launch.port:
        raise ConfigError(f"models.{role}.base_url {model_cfg.base_url} does not point at models.{role}.launch.port {launch.port}")
    if is_loopback(launch.host) and parsed.hostname and not is_loopback(parsed.hostname):
        raise ConfigError(
            f"models.{role}.base_url host {parsed.hostname} cannot reach a server bound to "
            f"models.{role}.launch.host {launch.host}; set launch.host to an address clients can reach"
        )


def _check_ports(specs: list[LaunchSpec]) -> None:
    seen: dict[int, LaunchSpec] = {}
    for spec in specs:
        other = seen.setdefault(spec.port, spec)
        if other is not spec:
            raise ConfigError(f"port {spec.port} is used by {other.name} and {spec.name} (see models.{spec.role}.launch)")
