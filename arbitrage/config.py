"""Run configuration: models per role, policy, threshold, separator and limits.

Loaded from YAML and validated by pydantic; every error names the field. The
defaults run offline on the shipped lab models, so `Config()` is a working run.
Swapping a model is editing one entry under `models:`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from arbitrage.errors import InputError
from arbitrage.policies import ARBITRAGE, Policy, get_policy
from arbitrage.protocols import SamplingParams

LAB_PROMPT_TEMPLATE = "Question: {problem}\nAnswer:\n"
LAB_MODEL_PREFIX = "lab:"


def _policy_from_name(value) -> Policy:
    return value if isinstance(value, Policy) else get_policy(value)


# In YAML and JSON a policy is its name; in code, the Policy object (arbitrage/policies.py).
PolicyField = Annotated[Policy, PlainValidator(_policy_from_name), PlainSerializer(lambda policy: policy.name)]


class ConfigError(InputError):
    """Invalid configuration; the message names the offending field or value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Request fields the completion request writes itself; `sampling.extra` may not set them.
COMPLETION_REQUEST_FIELDS = frozenset(
    {"model", "prompt", "messages", "max_tokens", "stop", "logprobs", "top_logprobs", "n", "stream",
     "temperature", "top_p", "seed"}
)


class SamplingConfig(_Strict):
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    extra: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="engine-specific request fields (e.g. repeat_penalty, top_k, min_p) sent verbatim on "
        "every completion request to an HTTP server",
    )

    @field_validator("extra")
    @classmethod
    def _extra_is_plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if key in COMPLETION_REQUEST_FIELDS:
                raise ValueError(f"{key!r} is a field the request sets itself; use sampling.{key} or leave it out"
                                 if key in ("temperature", "top_p", "seed") else
                                 f"{key!r} is a field the request sets itself")
            _check_finite(item, key)
        return value

    def params(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, seed=self.seed, extra=dict(self.extra))


def _check_finite(value: Any, where: str) -> None:
    """JSON has no NaN or infinity; a server would refuse the request or read garbage."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, f"{where}.{index}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")


class PromptConfig(_Strict):
    """How a model sees the problem. `raw`: the template text itself; `chat`: the
    template as the user message, rendered with the tokenizer's chat template."""

    format: Literal["raw", "chat"] = "raw"
    template: str = LAB_PROMPT_TEMPLATE
    system: str | None = None
    chat_template: Literal["tokenizer", "server"] = Field(
        "tokenizer",
        description="chat only: render with the model's tokenizer here (a directory or, with gguf_file, a GGUF), "
        "or let an HTTP server apply its own template over /v1/chat/completions",
    )

    @field_validator("template")
    @classmethod
    def _has_problem_slot(cls, value: str) -> str:
        if "{problem}" not in value:
            raise ValueError("template must contain the placeholder {problem}")
        return value

    def render(self, problem: str) -> str:
        return self.template.replace("{problem}", problem)


class LaunchConfig(_Strict):
    """How `arbitrage servers launch` starts this role's servers (see servers/launch/ and
    docs/SERVING.md). `tp`, `dp`, `context_length` and the memory fraction map to each
    engine's own flags; `replicas` > 1 starts that many servers behind one sglang-router
    (the balancer) at `balancer_port`; `nnodes` > 1 spans one server across machines."""

    engine: Literal["sglang", "vllm"] = "sglang"
    host: str = Field("127.0.0.1", min_length=1, description="interface to bind; anything but loopback is reachable from the network")
    port: int = Field(..., ge=1, le=65535, description="the server's port; with replicas, the first replica's")
    tp: int = Field(1, ge=1, description="tensor parallel size across all nodes")
    dp: int = Field(1, ge=1, description="data parallel size inside one server")
    mem_fraction_static: float | None = Field(None, gt=0.0, lt=1.0, description="sglang: --mem-fraction-static")
    gpu_memory_utilization: float | None = Field(None, gt=0.0, le=1.0, description="vllm: --gpu-memory-utilization")
    context_length: int | None = Field(None, ge=1, description="sglang --context-length, vllm --max-model-len")
    replicas: int = Field(1, ge=1, description="servers of this role, each on its own port and GPUs")
    ports: list[int] | None = Field(None, description="one port per replica (default: port, port+1, ...)")
    balancer_port: int | None = Field(None, ge=1, le=65535, description="sglang-router port in front of the replicas")
    balancer_policy: Literal["cache_aware", "round_robin", "random", "power_of_two"] = "cache_aware"
    gpus: list[int] | None = Field(None, description="GPU ids for this role on this node, split across replicas in order")
    nnodes: int = Field(1, ge=1, description="machines one server spans (tensor parallel across nodes)")
    node_rank: int = Field(0, ge=0, description="this machine's rank; 0 serves HTTP")
    dist_init_addr: str | None = Field(None, description="host:port of node 0 for the distributed rendezvous")
    vllm_entrypoint: Literal["api_server", "serve"] | None = Field(
        None,
        description="vllm: `python -m vllm.entrypoints.openai.api_server` (default on node 0) or `vllm serve` "
        "(default on node ranks above 0, which run --headless)",
    )
    extra_args: list[str] = Field(default_factory=list, description="appended verbatim to the command")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables for the server")

    @field_validator("ports")
    @classmethod
    def _valid_ports(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            bad = [port for port in value if not 1 <= port <= 65535]
            if bad:
                raise ValueError(f"port {bad[0]} is outside 1..65535")
            if len(set(value)) != len(value):
                raise ValueError("ports must be distinct")
        return value

    @field_validator("gpus")
    @classmethod
    def _valid_gpus(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if not value:
                raise ValueError("gpus must list at least one GPU id")
            if any(gpu < 0 for gpu in value):
                raise ValueError("GPU ids are 0 or more")
            if len(set(value)) != len(value):
                raise ValueError("GPU ids must be distinct")
        return value

    @field_validator("dist_init_addr")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"dist_init_addr must be host:port (node 0's address), got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "LaunchConfig":
        if self.engine == "sglang" and self.gpu_memory_utilization is not None:
            raise ValueError("gpu_memory_utilization is a vllm setting; for sglang use mem_fraction_static")
        if self.engine == "vllm" and self.mem_fraction_static is not None:
            raise ValueError("mem_fraction_static is an sglang setting; for vllm use gpu_memory_utilization")
        if self.engine == "sglang" and self.vllm_entrypoint is not None:
            raise ValueError("vllm_entrypoint applies to engine: vllm only")
        if self.engine == "vllm" and self.node_rank > 0 and self.vllm_entrypoint == "api_server":
            raise ValueError("vllm_entrypoint api_server cannot run node_rank > 0 (--headless): only `vllm serve` honours it")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        if self.nnodes > 1:
            if self.dist_init_addr is None:
                raise ValueError("dist_init_addr (node 0's host:port) is required when nnodes > 1")
            if (self.tp * self.dp) % self.nnodes:
                raise ValueError(f"tp * dp ({self.tp * self.dp}) must split evenly over nnodes {self.nnodes}")
            if self.replicas > 1:
                raise ValueError("replicas > 1 with nnodes > 1 is not supported; one multi-node server per role")
            if self.engine == "vllm" and self.dp > 1:
                raise ValueError(
                    f"dp {self.dp} with nnodes {self.nnodes}: vllm places data parallel ranks across nodes with its own "
                    "flags (--data-parallel-size-local, ...); keep dp: 1 and pass them in extra_args"
                )
        elif self.dist_init_addr is not None:
            raise ValueError("dist_init_addr is only used when nnodes > 1")
        if self.ports is not None:
            if len(self.ports) != self.replicas:
                raise ValueError(f"ports lists {len(self.ports)} port(s) for {self.replicas} replica(s)")
            if self.ports[0] != self.port:
                raise ValueError(f"ports must start with port {self.port}, got {self.ports[0]}")
        elif self.port + self.replicas - 1 > 65535:
            raise ValueError(f"replicas {self.replicas} from port {self.port} run past 65535; list ports")
        if self.replicas > 1:
            if self.balancer_port is None:
                raise ValueError("balancer_port (the sglang-router in front of the replicas) is required when replicas > 1")
            if self.balancer_port in self.replica_ports():
                raise ValueError(f"balancer_port {self.balancer_port} is also a replica port")
            if "CUDA_VISIBLE_DEVICES" in self.env:
                raise ValueError("env CUDA_VISIBLE_DEVICES cannot split GPUs across replicas; list them in gpus")
        elif self.balancer_port is not None:
            raise ValueError("balancer_port is only used when replicas > 1")
        if self.gpus is not None:
            if "CUDA_VISIBLE_DEVICES" in self.env:
                raise ValueError("gpus and env CUDA_VISIBLE_DEVICES both choose GPUs; keep one")
            wanted = self.replicas * self.gpus_per_server()
            if len(self.gpus) != wanted:
                raise ValueError(
                    f"gpus lists {len(self.gpus)} GPU(s); {self.replicas} replica(s) x tp {self.tp} x dp {self.dp}"
                    + (f" / nnodes {self.nnodes}" if self.nnodes > 1 else "")
                    + f" need {wanted}"
                )
        return self

    def gpus_per_server(self) -> int:
        """GPUs one server uses on this node."""
        return self.tp * self.dp // self.nnodes

    def replica_ports(self) -> list[int]:
        if self.ports is not None:
            return list(self.ports)
        return [self.port + index for index in range(self.replicas)]


class ModelConfig(_Strict):
    """One model role. `backend: transformers` loads `path` in-process;
    `backend: openai` talks to an OpenAI-compatible server (sglang, vLLM, or
    `arbitrage serve`) at `base_url`."""

    backend: Literal["transformers", "openai"] = "transformers"
    path: str = Field(..., min_length=1, description="local directory, hub id, or lab:NAME for a shipped lab model")
    gguf_file: str | None = None
    tokenizer: str | None = None
    trust_remote_code: bool = False
    device: str = "cpu"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    prompt: PromptConfig = PromptConfig()
    sampling: SamplingConfig = SamplingConfig()
    # PRM only: checkpoint convention (see DESIGN: Skywork value head, Qwen2.5-Math-PRM, judge LM).
    prm_style: Literal["skywork", "qwen", "judge"] = "skywork"
    # Router only: a sequence classifier over the annotated input, the zero-cost feature router,
    # or the target-verified router (the target's log-probabilities of the draft step, one prefill).
    router_kind: Literal["classifier", "features", "target_prefill"] = "classifier"
    # target_prefill only: the feature router saved with it scores first, and a step it scores
    # below cascade_low is accepted with no target prefill.
    cascade_low: float | None = Field(None, ge=0.0, le=1.0)
    # HTTP backend (sglang / vLLM / arbitrage serve).
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, description="resends of a request after a 5xx or an unreachable server (each "
                             "waiting up to servers.wait_s for /health); 0: the first failure is final, with no wait")
    # Which server speaks at base_url: its dialect in servers/wire/ (one name per entry of DIALECTS there);
    # `openai` is any other OpenAI-compatible server (llama.cpp, Ollama, LM Studio, TGI, ...).
    api: Literal["sglang", "vllm", "arbitrage", "openai"] = "sglang"
    launch: LaunchConfig | None = None
    # Router only: a feature router fitted on another draft reads logprobs it never saw; refused unless set.
    allow_foreign_router: bool = False

    @model_validator(mode="after")
    def _backend_fields(self) -> "ModelConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("base_url is required when backend is 'openai'")
        if self.backend == "transformers" and self.sampling.extra:
            raise ValueError("sampling.extra is sent only to an HTTP server (backend: openai); "
                             "the in-process backend reads none of it")
        if self.prompt.chat_template == "server":
            if self.backend != "openai":
                raise ValueError("prompt.chat_template 'server' needs backend: openai (a server that holds the template)")
            if self.prompt.format != "chat":
                raise ValueError("prompt.chat_template 'server' applies only with prompt.format: chat")
        if self.cascade_low is not None and self.router_kind != "target_prefill":
            raise ValueError("cascade_low applies to router_kind 'target_prefill' only")
        if self.router_kind == "target_prefill" and self.backend != "transformers":
            raise ValueError("router_kind 'target_prefill' runs in-process (backend: transformers); "
                             "its target may be served over HTTP")
        return self

    def reads_target(self) -> bool:
        """Whether this router needs the run's target model loaded beside it."""
        return self.router_kind == "target_prefill"

    def is_lab_model(self) -> bool:
        return self.path.startswith(LAB_MODEL_PREFIX)


def _lab(name: str, **extra) -> ModelConfig:
    return ModelConfig(path=f"{LAB_MODEL_PREFIX}{name}", **extra)


class ModelsConfig(_Strict):
    draft: ModelConfig | None = Field(default_factory=lambda: _lab("draft"))
    target: ModelConfig | None = Field(default_factory=lambda: _lab("target"))
    prm: ModelConfig | None = Field(default_factory=lambda: _lab("prm", prm_style="skywork"))
    router: ModelConfig | None = Field(default_factory=lambda: _lab("router-prefill", router_kind="target_prefill"))

    def get(self, role: str) -> ModelConfig | None:
        return getattr(self, role)


class Limits(_Strict):
    max_steps: int = Field(24, ge=1, le=10_000)
    max_step_tokens: int = Field(192, ge=1)
    max_total_tokens: int = Field(2048, ge=1, description="cap on the committed solution's tokens")
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="longest prompt (template and problem) in tokens; a longer problem ends in an error record "
        "instead of being run. Default: the generators' context length less max_step_tokens "
        "(servers/prompt_limit.py)",
    )


class ServersConfig(_Strict):
    """How a run treats the model servers it talks to (`backend: openai`)."""

    wait_s: float = Field(
        120.0,
        ge=0,
        description="how long a server may stay unreachable, its /health polled meanwhile, before the "
        "problems waiting on it fail",
    )


ROUTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class Config(_Strict):
    models: ModelsConfig = ModelsConfig()
    policy: PolicyField = ARBITRAGE
    threshold: float | None = Field(
        None,
        description="the policy's threshold (arbitrage: router score; rsd: draft PRM score; oracle: s_t - s_d); "
        "the policy's default when omitted, none for policies that take no threshold",
    )
    separator: str = Field("\n\n", min_length=1)
    limits: Limits = Limits()
    servers: ServersConfig = ServersConfig()
    target_samples: int = Field(
        1, ge=1, le=64,
        description="generate policy: target steps per decision; s_t for the router label is their mean PRM score",
    )
    target_sample_temperature: float = Field(0.7, gt=0.0, le=5.0, description="temperature of the extra samples")
    audit_escalations: bool = Field(
        False,
        description="also PRM-score both steps of every escalation so wasted escalations can be counted: "
        "batch runs (run, sweep) do it after solving, so it never slows them; a graph built with it "
        "scores inline, timed under 'prm_audit'",
    )
    checkpoint: str | None = Field(
        None,
        min_length=1,
        description="SQLite file in which batch runs keep each unfinished problem's graph state after every "
        "step, so a killed run resumes mid-problem at its last committed step (arbitrage/eval/durable.py)",
    )
    routers: dict[str, ModelConfig] = Field(
        default_factory=dict,
        description="more routers by name, beside models.router: a sweep runs policy 'arbitrage@NAME' with "
        "routers.NAME in place of models.router, so routers are compared on the same problems and models",
    )
    _threshold_is_default: bool = PrivateAttr(False)

    @field_validator("routers")
    @classmethod
    def _router_names(cls, value: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for name in value:
            if not ROUTER_NAME.fullmatch(name):
                raise ValueError(f"router name {name!r} must be letters, digits, '-' or '_' (it names run directories)")
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold_in_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        policy = info.data.get("policy")
        if policy is not None and policy.uses_threshold:
            policy.check_threshold(value)
        return value

    @model_validator(mode="after")
    def _threshold_for_policy(self) -> "Config":
        """After validation `threshold` is the one in force: the given one, else the policy's default."""
        if not self.policy.uses_threshold:
            object.__setattr__(self, "threshold", None)  # frozen model; the policy takes none
        elif self.threshold is None:
            object.__setattr__(self, "threshold", self.policy.default_threshold)
            self._threshold_is_default = True
        return self

    @property
    def threshold_is_default(self) -> bool:
        """True when no threshold was given and the policy's default is in force."""
        return self._threshold_is_default

    def with_overrides(
        self, *, policy: str | None = None, threshold: float | None = None, source: str = "command line"
    ) -> "Config":
        """A copy with another policy and/or threshold. A given threshold (here or in the
        config) always wins; only a threshold that was a policy default follows the policy.
        `source` names where the overrides came from in error messages."""
        data = self.model_dump()
        if self.threshold_is_default:
            data["threshold"] = None
        if policy is not None:
            data["policy"] = policy
        if threshold is not None:
            data["threshold"] = threshold
        return validate_config(data, source=source)

    def required_models(self) -> dict[str, ModelConfig]:
        roles = self.policy.roles
        if self.audit_escalations and "prm" not in roles and "draft" in roles and "target" in roles:
            roles = roles + ("prm",)  # auditing escalations scores both steps with the PRM
        missing = [role for role in roles if self.models.get(role) is None]
        if missing:
            raise ConfigError(f"policy '{self.policy.name}' needs models.{missing[0]} but the config has none")
        return {role: self.models.get(role) for role in roles}


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {_error_message(item)}")
    return "\n".join(lines)


def _error_message(item: dict) -> str:
    """pydantic's message, with the value that was given: a choice names the field and
    its choices the way an unknown policy does."""
    value = item.get("input")
    if item["type"] == "literal_error":
        name = str(item["loc"][-1]) if item["loc"] else "value"
        choices = re.findall(r"'([^']*)'", str(item.get("ctx", {}).get("expected", "")))
        return f"unknown {name} {value!r}; choose one of {', '.join(choices)}"
    message = item["msg"].removeprefix("Value error, ")
    shown = repr(value)
    scalar = value is None or isinstance(value, (str, int, float, bool))
    if scalar and item["type"] not in ("missing", "extra_forbidden") and shown not in message:
        message += f", got {shown}"
    return message


def validate_config(data: dict, *, source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load and validate a YAML config; `None` gives the offline lab default."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: malformed YAML: {error}") from None
    if data is None:
        raise ConfigError(
            f"config file {path} is empty; give at least one setting, or leave out --config for the lab defaults"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return validate_config(data, source=str(path))
