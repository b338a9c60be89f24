"""Load checkpoints for the in-process backend: path resolution, device/dtype, and a
process-wide cache so one checkpoint used by two roles (or two runs) loads once.

Every loaded model carries its own lock: all forwards through it are serialised,
which makes the model safe to share across threads and roles.
"""

from __future__ import annotations

import inspect
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from arbitrage.config import LAB_MODEL_PREFIX, Config, ConfigError, ModelConfig

LAB_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "lab" / "weights"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class ModelLoadError(ConfigError):
    """A configured model could not be found or loaded; the message names path and role."""


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    device: object
    lock: threading.RLock = field(default_factory=threading.RLock)


_cache: dict[tuple, LoadedModel] = {}
_tokenizers: dict[tuple, object] = {}
_cache_lock = threading.Lock()


def role_of(model_cfg: ModelConfig, config: Config, fallback: str) -> str:
    """The config role(s) this model config fills, for error messages ("draft/target")."""
    roles = [r for r in ("draft", "target", "prm", "router") if config.models.get(r) == model_cfg]
    return "/".join(roles) or fallback


def resolve_path(path: str, role: str) -> str:
    """`lab:NAME` -> the shipped weights directory; a local path must exist; a hub id passes."""
    if path.startswith(LAB_MODEL_PREFIX):
        name = path[len(LAB_MODEL_PREFIX):]
        directory = LAB_WEIGHTS_DIR / name
        if not directory.is_dir():
            raise ModelLoadError(
                f"lab model '{name}' not found at {directory} (models.{role}.path = {path!r}); "
                "train the lab models or point the path at a checkpoint directory"
            )
        return str(directory)
    local = Path(path).expanduser()
    if local.exists():
        return str(local)
    if _HUB_ID.match(path) and not path.startswith((".", "~")):
        return path
    raise ModelLoadError(f"models.{role}.path: model path not found: {path}")


def resolve_device(device: str, role: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"models.{role}.device: invalid device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"models.{role}.device is {device!r} but CUDA is not available")
    return resolved


def _dtype_arg(dtype: str):
    import torch

    return "auto" if dtype == "auto" else getattr(torch, _DTYPES[dtype])


def load_tokenizer(model_cfg: ModelConfig, role: str):
    from transformers import AutoTokenizer

    if model_cfg.tokenizer:
        source, gguf_file = resolve_path(model_cfg.tokenizer, role), None
    else:
        source, gguf_file = resolve_path(model_cfg.path, role), model_cfg.gguf_file
    key = (source, gguf_file, model_cfg.trust_remote_code)
    with _cache_lock:
        if key in _tokenizers:
            return _tokenizers[key]
    kwargs = {"trust_remote_code": model_cfg.trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"models.{role}: cannot load the tokenizer from {source!r}: {error}") from None
    with _cache_lock:
        return _tokenizers.setdefault(key, tokenizer)


def load_model(auto_class: str, model_cfg: ModelConfig, role: str, **model_kwargs) -> LoadedModel:
    """Load (or reuse) `transformers.<auto_class>` for this config, in eval mode.

    Refuses a checkpoint whose weights do not cover the requested class (e.g. a causal
    LM loaded as a classifier would get a randomly initialised head and score noise).
    """
    import transformers

    path = resolve_path(model_cfg.path, role)
    device = resolve_device(model_cfg.device, role)
    key = (
        auto_class, path, model_cfg.gguf_file, str(device), model_cfg.dtype,
        model_cfg.trust_remote_code, model_cfg.tokenizer, tuple(sorted(model_kwargs.items())),
    )
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    kwargs = dict(model_kwargs, dtype=_dtype_arg(model_cfg.dtype), trust_remote_code=model_cfg.trust_remote_code)
    if model_cfg.gguf_file:
        kwargs["gguf_file"] = model_cfg.gguf_file
    try:
        model, info = getattr(transformers, auto_class).from_pretrained(path, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as error:
        where = "" if Path(path).exists() else " (no such local directory, so it was tried as a hub id)"
        raise ModelLoadError(f"models.{role}: cannot load {auto_class} from {path!r}{where}: {error}") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ModelLoadError(
            f"models.{role}: checkpoint {path!r} lacks weights for {auto_class} "
            f"({', '.join(sorted(missing)[:4])}{' ...' if len(missing) > 4 else ''}); wrong model for this role?"
        )
    model.to(device)
    model.eval()
    loaded = LoadedModel(model=model, tokenizer=load_tokenizer(model_cfg, role), device=device)
    with _cache_lock:
        return _cache.setdefault(key, loaded)


def accepts_logits_to_keep(model) -> bool:
    """Whether the forward can skip the vocabulary projection for all but the last position."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def clear_cache() -> None:
    """Forget every cached model and tokenizer (tests; freeing memory between runs)."""
    with _cache_lock:
        _cache.clear()
        _tokenizers.clear()


def cached_count() -> int:
    with _cache_lock:
        return len(_cache)
