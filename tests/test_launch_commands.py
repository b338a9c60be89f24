"""`servers launch` commands: the exact argv each engine gets, replicas behind sglang-router,
multi-node ranks, host binding, and config errors that name the field.

Every flag a built command may carry must be in the table of flags checked against the
engines' own argument parsers (PyPI wheels of the current releases; files named relative
to the package):

    sglang 0.5.23         sglang/srt/arg_groups/fields/{model,serving,parallel,schedule}.py
    vLLM 0.34.0           vllm/engine/arg_utils.py, vllm/entrypoints/common/cli_args.py,
                          vllm/entrypoints/cli/serve.py (--headless), vllm/config/model.py (--runner)
    sglang-router 0.3.2   sglang_router/router_args.py RouterArgs.add_cli_args

These argv were also parsed with those three parsers (sglang ServerArgs.add_cli_args,
vLLM make_arg_parser and the `serve` subparser, sglang_router parse_router_args) for every
example config and the cases below: all parsed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arbitrage.config import ConfigError, load_config, validate_config
from arbitrage.servers.launch import launch_specs, network_warnings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

VERIFIED_FLAGS = {
    "sglang.launch_server": {
        "--model-path": "fields/model.py model_path",
        "--served-model-name": "fields/serving.py served_model_name",
        "--host": "fields/serving.py host",
        "--port": "fields/serving.py port",
        "--tp-size": "fields/parallel.py tp_size",
        "--dp-size": "fields/parallel.py dp_size",
        "--nnodes": "fields/parallel.py nnodes",
        "--node-rank": "fields/parallel.py node_rank",
        "--dist-init-addr": "fields/parallel.py dist_init_addr",
        "--mem-fraction-static": "fields/schedule.py mem_fraction_static",
        "--context-length": "fields/model.py context_length",
        "--dtype": "fields/model.py dtype",
        "--trust-remote-code": "fields/model.py trust_remote_code",
        "--is-embedding": "fields/model.py is_embedding",
    },
    "vllm": {
        "--model": "engine/arg_utils.py ModelConfig.model",
        "--served-model-name": "engine/arg_utils.py ModelConfig.served_model_name",
        "--host": "entrypoints/common/cli_args.py FrontendArgs.host",
        "--port": "entrypoints/common/cli_args.py FrontendArgs.port",
        "--tensor-parallel-size": "engine/arg_utils.py ParallelConfig",
        "--data-parallel-size": "engine/arg_utils.py ParallelConfig",
        "--distributed-executor-backend": "engine/arg_utils.py ParallelConfig (mp for nnodes > 1)",
        "--nnodes": "engine/arg_utils.py ParallelConfig",
        "--node-rank": "engine/arg_utils.py ParallelConfig",
        "--master-addr": "engine/arg_utils.py ParallelConfig",
        "--master-port": "engine/arg_utils.py ParallelConfig",
        "--headless": "entrypoints/cli/serve.py (vllm serve only)",
        "--gpu-memory-utilization": "engine/arg_utils.py CacheConfig",
        "--max-model-len": "engine/arg_utils.py ModelConfig.max_model_len",
        "--dtype": "engine/arg_utils.py ModelConfig.dtype",
        "--trust-remote-code": "engine/arg_utils.py ModelConfig.trust_remote_code",
        "--runner": "config/model.py RunnerOption (pooling)",
    },
    "sglang_router.launch_router": {
        "--worker-urls": "router_args.py (nargs *)",
        "--host": "router_args.py (default 0.0.0.0)",
        "--port": "router_args.py",
        "--policy": "router_args.py (cache_aware, round_robin, random, power_of_two, manual)",
    },
}


def _table_for(argv: list[str]) -> dict[str, str]:
    module = argv[2]
    return VERIFIED_FLAGS["vllm" if module.startswith("vllm.") else module]


def _config(**models) -> object:
    return validate_config({"models": models})


def _model(path="org/model", *, base_url, api="sglang", **launch) -> dict:
    return {"backend": "openai", "path": path, "base_url": base_url, "api": api, "launch": launch}


def _argvs(config, roles=None, **kwargs) -> list[list[str]]:
    return [spec.argv for spec in launch_specs(config, roles, python="py", **kwargs)]


def _flags_verified(argvs: list[list[str]], extra_args: tuple[str, ...] = ()) -> None:
    for argv in argvs:
        table = _table_for(argv)
        unverified = [word for word in argv if word.startswith("--") and word not in table and word not in extra_args]
        assert not unverified, f"flags not in the verified table: {unverified} in {argv}"


# ---- sglang ----


def test_sglang_multi_node_flags_on_both_ranks():
    target = _model(base_url="http://127.0.0.1:30002", port=30002, tp=16, nnodes=2, dist_init_addr="10.1.2.3:5000", gpus=list(range(8)))
    config = _config(target=target)
    rank0 = _argvs(config)
    rank1 = _argvs(config, node_rank=1)
    assert rank0 == [
        ["py", "-m", "sglang.launch_server", "--model-path", "org/model", "--host", "127.0.0.1", "--port", "30002",
         "--tp-size", "16", "--nnodes", "2", "--node-rank", "0", "--dist-init-addr", "10.1.2.3:5000"],
    ]  # fmt: skip
    assert rank1[0][rank1[0].index("--node-rank") + 1] == "1"
    (spec0,), (spec1,) = launch_specs(config), launch_specs(config, node_rank=1)
    assert spec0.env == spec1.env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    # Rank 0 serves HTTP; ranks above 0 run schedulers only, so there is nothing to poll.
    assert spec0.ready_url == "http://127.0.0.1:30002/health" and spec1.ready_url is None
    _flags_verified(rank0 + rank1)


def test_sglang_scoring_roles_are_embedding_models_and_generation_roles_are_not():
    config = _config(
        draft=_model(base_url="http://127.0.0.1:1", port=1),
        prm=_model(base_url="http://127.0.0.1:2", port=2),
        router=_model(base_url="http://127.0.0.1:3", port=3),
    )
    draft, prm, router = _argvs(config)
    assert "--is-embedding" not in draft and prm[-1] == router[-1] == "--is-embedding"
    _flags_verified([draft, prm, router])


# ---- vLLM ----


def test_vllm_generation_command_uses_the_api_server_module_and_its_flags():
    draft = {
        **_model("/models/llama-1b", base_url="http://127.0.0.1:8001", api="vllm", engine="vllm", port=8001, tp=2, dp=2,
                 gpu_memory_utilization=0.85, context_length=4096),
        "model": "draft", "dtype": "bfloat16", "trust_remote_code": True,
    }  # fmt: skip
    (argv,) = _argvs(_config(draft=draft))
    assert argv == [
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/llama-1b", "--served-model-name", "draft",
        "--host", "127.0.0.1", "--port", "8001", "--tensor-parallel-size", "2", "--data-parallel-size", "2",
        "--gpu-memory-utilization", "0.85", "--max-model-len", "4096", "--dtype", "bfloat16", "--trust-remote-code",
    ]  # fmt: skip
    _flags_verified([argv])


def test_vllm_scoring_roles_run_as_pooling_models():
    prm = _model(base_url="http://127.0.0.1:8003", api="vllm", engine="vllm", port=8003)
    router = _model(base_url="http://127.0.0.1:8004", api="vllm", engine="vllm", port=8004, vllm_entrypoint="serve")
    prm_argv, router_argv = _argvs(_config(prm=prm, router=router))
    assert prm_argv == [
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "org/model", "--host", "127.0.0.1", "--port", "8003",
        "--runner", "pooling",
    ]  # fmt: skip
    # `vllm serve` takes the model as its positional argument.
    assert router_argv[:5] == ["py", "-m", "vllm.entrypoints.cli.main", "serve", "org/model"]
    assert router_argv[-2:] == ["--runner", "pooling"]
    for argv in (prm_argv, router_argv):
        assert "--task" not in argv and "--is-embedding" not in argv  # vLLM 0.34.0 has no --task
    _flags_verified([prm_argv, router_argv])


def test_vllm_float32_and_remote_code_are_left_to_the_engine_unless_asked():
    (argv,) = _argvs(_config(draft=_model(base_url="http://127.0.0.1:8001", api="vllm", engine="vllm", port=8001)))
    assert "--dtype" not in argv and "--trust-remote-code" not in argv


def test_vllm_multi_node_maps_dist_init_addr_and_runs_ranks_above_0_headless():
    target = _model(
        base_url="http://127.0.0.1:8002", api="vllm", engine="vllm", port=8002, tp=16, nnodes=2, dist_init_addr="node0:29501"
    )
    config = _config(target=target)
    (rank0,), (rank1,) = _argvs(config), _argvs(config, node_rank=1)
    multi_node = ["--distributed-executor-backend", "mp", "--nnodes", "2", "--node-rank", "0", "--master-addr", "node0", "--master-port", "29501"]
    assert rank0 == [
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "org/model", "--host", "127.0.0.1", "--port", "8002",
        "--tensor-parallel-size", "16", *multi_node,
    ]  # fmt: skip
    # Only `vllm serve` honours --headless, so rank 1 uses it.
    assert rank1[:5] == ["py", "-m", "vllm.entrypoints.cli.main", "serve", "org/model"]
    assert rank1[rank1.index("--node-rank") + 1] == "1" and rank1[-1] == "--headless"
    assert launch_specs(config, node_rank=1)[0].ready_url is None
    _flags_verified([rank0, rank1])


def test_vllm_api_server_entrypoint_is_refused_on_a_headless_rank():
    target = _model(
        base_url="http://127.0.0.1:8002", api="vllm", engine="vllm", port=8002, tp=2, nnodes=2,
        dist_init_addr="node0:29501", vllm_entrypoint="api_server",
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"--node-rank 1 for models.target.launch: .*vllm_entrypoint api_server"):
        launch_specs(_config(target=target), node_rank=1)


# ---- replicas behind sglang-router ----


def test_replicas_get_their_own_ports_and_gpus_behind_one_balancer():
    target = _model(base_url="http://127.0.0.1:30002", port=30201, replicas=3, tp=2, gpus=[2, 3, 4, 5, 6, 7], balancer_port=30002)
    specs = launch_specs(_config(target=target), python="py")
    assert [spec.name for spec in specs] == ["target.0", "target.1", "target.2", "target.balancer"]
    assert [spec.port for spec in specs] == [30201, 30202, 30203, 30002]
    assert [spec.env for spec in specs] == [
        {"CUDA_VISIBLE_DEVICES": "2,3"}, {"CUDA_VISIBLE_DEVICES": "4,5"}, {"CUDA_VISIBLE_DEVICES": "6,7"}, {},
    ]  # fmt: skip
    assert specs[-1].argv == [
        "py", "-m", "sglang_router.launch_router",
        "--worker-urls", "http://127.0.0.1:30201", "http://127.0.0.1:30202", "http://127.0.0.1:30203",
        "--host", "127.0.0.1", "--port", "30002", "--policy", "cache_aware",
    ]  # fmt: skip
    # The router is ready when it has a healthy worker; its /health only says it is alive.
    assert specs[-1].ready_url == "http://127.0.0.1:30002/readiness"
    assert all(spec.ready_url.endswith("/health") for spec in specs[:-1])
    _flags_verified([spec.argv for spec in specs])


def test_replica_gpus_default_to_consecutive_ids_and_ports_can_be_listed():
    draft = _model(base_url="http://127.0.0.1:9000", api="vllm", engine="vllm", port=9100, ports=[9100, 9150], replicas=2, tp=2, balancer_port=9000, balancer_policy="round_robin")
    specs = launch_specs(_config(draft=draft), python="py")
    assert [(spec.port, spec.env) for spec in specs[:2]] == [(9100, {"CUDA_VISIBLE_DEVICES": "0,1"}), (9150, {"CUDA_VISIBLE_DEVICES": "2,3"})]
    assert all(spec.argv[2] == "vllm.entrypoints.openai.api_server" for spec in specs[:2])
    assert specs[2].argv[-2:] == ["--policy", "round_robin"]
    _flags_verified([spec.argv for spec in specs])


def test_base_url_must_point_at_the_balancer_not_a_replica():
    draft = _model(base_url="http://127.0.0.1:30102", port=30101, replicas=2, balancer_port=30001)
    with pytest.raises(ConfigError, match=r"models.draft.base_url http://127.0.0.1:30102 points at a replica; .*balancer_port 30001"):
        launch_specs(_config(draft=draft))
    draft["base_url"] = "http://127.0.0.1:30999"
    with pytest.raises(ConfigError, match="does not point at models.draft.launch.balancer_port 30001"):
        launch_specs(_config(draft=draft))


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
@pytest.mark.parametrize("role", ["prm", "router"])
def test_scoring_roles_cannot_be_replicated_behind_sglang_router(engine, role):
    model = _model(base_url="http://127.0.0.1:30003", api=engine, engine=engine, port=30103, replicas=2, balancer_port=30003)
    with pytest.raises(ConfigError, match=rf"models.{role}.launch.replicas 2: sglang-router has no /classify or /pooling route"):
        launch_specs(_config(**{role: model}))


# ---- host binding ----


def test_non_loopback_host_warns_and_replicas_stay_on_loopback():
    draft = _model(base_url="http://10.0.0.5:30001", port=30101, replicas=2, balancer_port=30001, host="0.0.0.0")
    target = _model(base_url="http://127.0.0.1:30002", port=30002)
    specs = launch_specs(_config(draft=draft, target=target), python="py")
    assert [(spec.name, spec.host) for spec in specs] == [
        ("draft.0", "127.0.0.1"), ("draft.1", "127.0.0.1"), ("draft.balancer", "0.0.0.0"), ("target", "127.0.0.1"),
    ]  # fmt: skip
    assert specs[2].argv[specs[2].argv.index("--host") + 1] == "0.0.0.0"
    assert specs[2].ready_url == "http://127.0.0.1:30001/readiness"  # a wildcard bind is probed on loopback
    (warning,) = network_warnings(specs)
    assert "draft.balancer listens on 0.0.0.0:30001, which is reachable from the network" in warning
    assert "models.draft.launch.host" in warning


def test_a_single_server_binds_the_configured_host():
    (spec,) = launch_specs(_config(target=_model(base_url="http://10.0.0.5:30002", port=30002, host="10.0.0.5")), python="py")
    assert spec.argv[spec.argv.index("--host") + 1] == "10.0.0.5" and spec.ready_url == "http://10.0.0.5:30002/health"
    assert len(network_warnings([spec])) == 1
    assert network_warnings(launch_specs(_config(target=_model(base_url="http://localhost:1", port=1)))) == []


def test_base_url_host_must_reach_a_loopback_server():
    with pytest.raises(ConfigError, match=r"models.target.base_url host 10.0.0.5 cannot reach .* models.target.launch.host 127.0.0.1"):
        launch_specs(_config(target=_model(base_url="http://10.0.0.5:30002", port=30002)))


# ---- validation: every error names its field ----


@pytest.mark.parametrize(
    "launch, message",
    [
        ({"engine": "tgi"}, r"models.target.launch.engine: unknown engine 'tgi'; choose one of sglang, vllm"),
        ({"nnodes": 2, "node_rank": 2, "dist_init_addr": "h:1"}, r"models.target.launch: .*node_rank 2 must be below nnodes 2"),
        ({"nnodes": 2}, r"models.target.launch: .*dist_init_addr .* is required when nnodes > 1"),
        ({"nnodes": 2, "dist_init_addr": "node0"}, r"models.target.launch.dist_init_addr: .*must be host:port"),
        ({"nnodes": 2, "dist_init_addr": "node0:99999"}, r"models.target.launch.dist_init_addr: .*must be host:port"),
        ({"nnodes": 2, "tp": 3, "dist_init_addr": "h:1"}, r"tp \* dp \(3\) must split evenly over nnodes 2"),
        ({"dist_init_addr": "h:1"}, r"dist_init_addr is only used when nnodes > 1"),
        ({"node_rank": -1}, r"models.target.launch.node_rank: Input should be greater than or equal to 0"),
        ({"replicas": 2}, r"balancer_port .* is required when replicas > 1"),
        ({"replicas": 2, "balancer_port": 30003}, r"balancer_port 30003 is also a replica port"),
        ({"balancer_port": 30000}, r"balancer_port is only used when replicas > 1"),
        ({"replicas": 2, "balancer_port": 1, "ports": [30002]}, r"ports lists 1 port\(s\) for 2 replica\(s\)"),
        ({"replicas": 2, "balancer_port": 1, "ports": [5, 6]}, r"ports must start with port 30002"),
        ({"replicas": 2, "balancer_port": 1, "gpus": [0, 1, 2]}, r"gpus lists 3 GPU\(s\); 2 replica\(s\) x tp 1 x dp 1 need 2"),
        ({"gpus": [0, 0]}, r"models.target.launch.gpus: .*GPU ids must be distinct"),
        ({"gpus": [0], "env": {"CUDA_VISIBLE_DEVICES": "1"}}, r"gpus and env CUDA_VISIBLE_DEVICES both choose GPUs"),
        ({"replicas": 2, "balancer_port": 1, "env": {"CUDA_VISIBLE_DEVICES": "1"}}, r"env CUDA_VISIBLE_DEVICES cannot split GPUs across replicas"),
        ({"replicas": 2, "balancer_port": 1, "nnodes": 2, "dist_init_addr": "h:1", "tp": 2}, r"replicas > 1 with nnodes > 1"),
        ({"gpu_memory_utilization": 0.5}, r"gpu_memory_utilization is a vllm setting; for sglang use mem_fraction_static"),
        ({"engine": "vllm", "mem_fraction_static": 0.5}, r"mem_fraction_static is an sglang setting"),
        ({"vllm_entrypoint": "serve"}, r"vllm_entrypoint applies to engine: vllm only"),
        ({"engine": "vllm", "nnodes": 2, "tp": 2, "dp": 2, "dist_init_addr": "h:1"}, r"dp 2 with nnodes 2: vllm places data parallel ranks"),
    ],
)
def test_launch_config_errors_name_the_field(launch, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"models": {"target": _model(base_url="http://127.0.0.1:30002", **{"port": 30002, **launch})}})


@pytest.mark.parametrize("api, engine", [("sglang", "vllm"), ("vllm", "sglang"), ("arbitrage", "sglang")])
def test_api_must_match_the_launched_engine(api, engine):
    config = _config(draft=_model(base_url="http://127.0.0.1:1", api=api, engine=engine, port=1))
    with pytest.raises(ConfigError, match=rf"models.draft.api is '{api}' but models.draft.launch.engine is '{engine}'.*set api: {engine}"):
        launch_specs(config)


def test_node_rank_override_picks_the_multi_node_roles():
    draft = _model(base_url="http://127.0.0.1:1", port=1)
    target = _model(base_url="http://127.0.0.1:2", port=2, tp=2, nnodes=2, dist_init_addr="h:5000")
    config = _config(draft=draft, target=target)
    assert [spec.name for spec in launch_specs(config, node_rank=1)] == ["target"]
    assert [spec.name for spec in launch_specs(config, node_rank=0)] == ["draft", "target"]
    with pytest.raises(ConfigError, match=r"--node-rank 1: models.draft.launch.nnodes is 1, so draft runs on node 0 only"):
        launch_specs(config, ["draft"], node_rank=1)
    with pytest.raises(ConfigError, match=r"--node-rank 2 for models.target.launch: .*node_rank 2 must be below nnodes 2"):
        launch_specs(config, node_rank=2)
    with pytest.raises(ConfigError, match=r"--node-rank 1: no model in the config has launch.nnodes above 1"):
        launch_specs(_config(draft=draft), node_rank=1)


def test_ports_are_unique_across_replicas_balancers_and_roles():
    draft = _model(base_url="http://127.0.0.1:30001", port=30101, replicas=2, balancer_port=30001)
    target = _model(base_url="http://127.0.0.1:30102", port=30102)
    with pytest.raises(ConfigError, match=r"port 30102 is used by draft.1 and target"):
        launch_specs(_config(draft=draft, target=target))


@pytest.mark.parametrize("name", ["sglang_llama", "sglang_qwen_math", "sglang_8gpu", "sglang_2node", "vllm_llama"])
def test_every_example_builds_commands_from_checked_flags(name):
    config = load_config(EXAMPLES / f"{name}.yaml")
    extra = tuple(word for role in ("draft", "target", "prm", "router") for word in config.models.get(role).launch.extra_args)
    argvs = _argvs(config)
    if any(config.models.get(role).launch.nnodes > 1 for role in ("draft", "target", "prm", "router")):
        argvs += _argvs(config, node_rank=1)
    _flags_verified(argvs, extra)
    if name.startswith("vllm"):
        assert [argv[-2:] == ["--runner", "pooling"] for argv in argvs] == [False, False, True, True]


# ---- the dry run, as a user types it ----


def _cli_dry_run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "arbitrage.cli", "servers", "launch", "--dry-run", "--python", "python", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


SGLANG_8GPU = [
    *(
        f"CUDA_VISIBLE_DEVICES={gpu} python -m sglang.launch_server --model-path meta-llama/Llama-3.2-1B-Instruct "
        f"--host 127.0.0.1 --port {port} --mem-fraction-static 0.85 --context-length 8192 --dtype bfloat16"
        for gpu, port in ((0, 30101), (1, 30102))
    ),
    "python -m sglang_router.launch_router --worker-urls http://127.0.0.1:30101 http://127.0.0.1:30102 "
    "--host 127.0.0.1 --port 30001 --policy cache_aware",
    *(
        f"CUDA_VISIBLE_DEVICES={gpu} python -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct "
        f"--host 127.0.0.1 --port {port} --mem-fraction-static 0.85 --context-length 8192 --dtype bfloat16"
        for gpu, port in ((2, 30201), (3, 30202), (4, 30203), (5, 30204))
    ),
    "python -m sglang_router.launch_router --worker-urls http://127.0.0.1:30201 http://127.0.0.1:30202 "
    "http://127.0.0.1:30203 http://127.0.0.1:30204 --host 127.0.0.1 --port 30002 --policy cache_aware",
    "CUDA_VISIBLE_DEVICES=6 python -m sglang.launch_server --model-path Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B "
    "--host 127.0.0.1 --port 30003 --mem-fraction-static 0.8 --context-length 8192 --dtype bfloat16 --is-embedding",
    "CUDA_VISIBLE_DEVICES=7 python -m sglang.launch_server --model-path runs/router/skywork-1.5b "
    "--host 127.0.0.1 --port 30004 --mem-fraction-static 0.8 --context-length 8192 --dtype bfloat16 --is-embedding",
]

SGLANG_2NODE_TARGET = (
    "CUDA_VISIBLE_DEVICES=0,1,2,3 python -m sglang.launch_server --model-path meta-llama/Llama-3.1-70B-Instruct "
    "--host 127.0.0.1 --port 30002 --tp-size 8 --nnodes 2 --node-rank {rank} --dist-init-addr 10.0.0.1:50000 "
    "--mem-fraction-static 0.85 --context-length 8192 --dtype bfloat16"
)


def test_cli_dry_run_prints_replicas_and_their_routers():
    result = _cli_dry_run("--config", str(EXAMPLES / "sglang_8gpu.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == SGLANG_8GPU
    assert result.stderr == ""  # everything on loopback: no warning


def test_cli_dry_run_prints_each_node_rank():
    node0 = _cli_dry_run("--config", str(EXAMPLES / "sglang_2node.yaml"))
    node1 = _cli_dry_run("--config", str(EXAMPLES / "sglang_2node.yaml"), "--node-rank", "1")
    assert node0.returncode == node1.returncode == 0, node0.stderr + node1.stderr
    assert [line.split(" --model-path ")[1].split()[0] for line in node0.stdout.splitlines()] == [
        "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.1-70B-Instruct",
        "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B", "runs/router/skywork-1.5b-llama70b",
    ]  # fmt: skip
    assert node0.stdout.splitlines()[1] == SGLANG_2NODE_TARGET.format(rank=0)
    assert node1.stdout.splitlines() == [SGLANG_2NODE_TARGET.format(rank=1)]


def test_cli_dry_run_prints_vllm_commands_and_warns_about_a_public_host(tmp_path):
    config = tmp_path / "vllm.yaml"
    config.write_text(
        "models:\n"
        "  draft:\n"
        "    {backend: openai, path: /models/draft, api: vllm, base_url: 'http://127.0.0.1:8000',\n"
        "     launch: {engine: vllm, port: 8101, replicas: 2, balancer_port: 8000, host: 0.0.0.0, gpu_memory_utilization: 0.4}}\n"
        "  prm:\n"
        "    {backend: openai, path: /models/prm, api: vllm, base_url: 'http://127.0.0.1:8003',\n"
        "     launch: {engine: vllm, port: 8003, gpus: [2]}}\n"
    )
    result = _cli_dry_run("--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "CUDA_VISIBLE_DEVICES=0 python -m vllm.entrypoints.openai.api_server --model /models/draft --host 127.0.0.1 --port 8101 --gpu-memory-utilization 0.4",
        "CUDA_VISIBLE_DEVICES=1 python -m vllm.entrypoints.openai.api_server --model /models/draft --host 127.0.0.1 --port 8102 --gpu-memory-utilization 0.4",
        "python -m sglang_router.launch_router --worker-urls http://127.0.0.1:8101 http://127.0.0.1:8102 --host 0.0.0.0 --port 8000 --policy cache_aware",
        "CUDA_VISIBLE_DEVICES=2 python -m vllm.entrypoints.openai.api_server --model /models/prm --host 127.0.0.1 --port 8003 --runner pooling",
    ]
    assert "warning: draft.balancer listens on 0.0.0.0:8000, which is reachable from the network" in result.stderr


def test_cli_dry_run_config_error_names_the_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "models:\n  target:\n    {backend: openai, path: m, base_url: 'http://127.0.0.1:1',\n"
        "     launch: {port: 1, tp: 2, nnodes: 2, node_rank: 3, dist_init_addr: 'h:1'}}\n"
    )
    result = _cli_dry_run("--config", str(config))
    assert result.returncode == 2 and result.stdout == ""
    assert "models.target.launch" in result.stderr and "node_rank 3 must be below nnodes 2" in result.stderr
