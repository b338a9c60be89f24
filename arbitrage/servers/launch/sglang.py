"""The sglang server command for one role: `python -m sglang.launch_server ...`.

Flags checked against sglang 0.5.23 (PyPI wheel). Its ServerArgs fields live in
sglang/srt/arg_groups/fields/*.py and become `--kebab-case` flags
(arg_groups/arg_utils.py `_field_to_cli_name`):

    config                        flag                      field (file)
    path                          --model-path              model_path (fields/model.py)
    model                         --served-model-name       served_model_name (fields/serving.py)
    launch.host / port            --host / --port           host, port (fields/serving.py)
    launch.tp / dp                --tp-size / --dp-size     tp_size, dp_size (fields/parallel.py)
    launch.mem_fraction_static    --mem-fraction-static     mem_fraction_static (fields/schedule.py)
    launch.context_length         --context-length          context_length (fields/model.py)
    dtype (bf16 / fp16 only)      --dtype                   dtype (fields/model.py)
    trust_remote_code             --trust-remote-code       trust_remote_code (fields/model.py)
    prm / router roles            --is-embedding            is_embedding (fields/model.py)
    launch.nnodes / node_rank     --nnodes / --node-rank    nnodes, node_rank (fields/parallel.py)
    launch.dist_init_addr         --dist-init-addr          dist_init_addr (fields/parallel.py)

PRM and router roles are reward/classifier models: `--is-embedding` makes sglang serve
them through `/classify` (srt/entrypoints/http_server.py). Node ranks above 0 run only
schedulers and no HTTP server (srt/entrypoints/engine.py, "Non-zero-rank nodes do not run
tokenizer processes"), so they have nothing to health-poll.
"""

from __future__ import annotations

from arbitrage.config import LaunchConfig, ModelConfig
from arbitrage.servers.launch.spec import SCORING_ROLES, engine_dtype


def sglang_command(role: str, model_cfg: ModelConfig, launch: LaunchConfig, *, host: str, port: int, python: str) -> list[str]:
    argv = [python, "-m", "sglang.launch_server", "--model-path", model_cfg.path]
    if model_cfg.model:
        argv += ["--served-model-name", model_cfg.model]
    argv += ["--host", host, "--port", str(port)]
    if launch.tp != 1:
        argv += ["--tp-size", str(launch.tp)]
    if launch.dp != 1:
        argv += ["--dp-size", str(launch.dp)]
    if launch.nnodes > 1:
        argv += ["--nnodes", str(launch.nnodes), "--node-rank", str(launch.node_rank), "--dist-init-addr", launch.dist_init_addr]
    if launch.mem_fraction_static is not None:
        argv += ["--mem-fraction-static", f"{launch.mem_fraction_static:g}"]
    if launch.context_length is not None:
        argv += ["--context-length", str(launch.context_length)]
    if dtype := engine_dtype(model_cfg.dtype):
        argv += ["--dtype", dtype]
    if model_cfg.trust_remote_code:
        argv.append("--trust-remote-code")
    if role in SCORING_ROLES:
        argv.append("--is-embedding")
    return argv + list(launch.extra_args)
