"""In-process transformers backend: the loaders `arbitrage.servers.factory` calls.

Models load once per (class, path, gguf_file, device, dtype, ...) and are shared
by every role and run that asks for the same checkpoint.
"""

from __future__ import annotations

from arbitrage.config import Config, ConfigError, ModelConfig
from arbitrage.servers.transformers_backend.generator import TransformersGenerator
from arbitrage.servers.transformers_backend.loading import ModelLoadError, clear_cache, load_model, resolve_path, role_of
from arbitrage.servers.transformers_backend.prm import build_prm
from arbitrage.servers.transformers_backend.router import ClassifierRouter, router_annotates

__all__ = ["load_generator", "load_prm", "load_router", "clear_cache", "ModelLoadError"]


def load_generator(model_cfg: ModelConfig, config: Config) -> TransformersGenerator:
    role = role_of(model_cfg, config, "generator")
    return TransformersGenerator(load_model("AutoModelForCausalLM", model_cfg, role), model_cfg, config.separator)


def load_prm(model_cfg: ModelConfig, config: Config):
    role = role_of(model_cfg, config, "prm")
    style = model_cfg.prm_style
    if style == "judge":
        loaded = load_model("AutoModelForCausalLM", model_cfg, role)
    elif style == "qwen" and model_cfg.trust_remote_code:
        # The released Qwen2.5-Math-PRM is a custom class reached through AutoModel.
        loaded = load_model("AutoModel", model_cfg, role)
    else:
        loaded = load_model("AutoModelForTokenClassification", model_cfg, role)
    try:
        return build_prm(style, loaded, model_cfg, config.separator)
    except ValueError as error:
        raise ModelLoadError(f"models.{role} ({model_cfg.path}): {error}") from None


def load_router(model_cfg: ModelConfig, config: Config, *, target=None):
    """`target`: the loaded target model, for a router that reads it (`target_prefill`)."""
    role = role_of(model_cfg, config, "router")
    if model_cfg.router_kind == "target_prefill":
        from arbitrage.servers.prefill_router import load_prefill_router

        try:
            return load_prefill_router(model_cfg, config, target, where=f"models.{role}")
        except ConfigError:
            raise
        except (FileNotFoundError, ValueError) as error:
            raise ModelLoadError(f"models.{role} ({model_cfg.path}): {error}") from None
    if model_cfg.router_kind == "features":
        from arbitrage.servers.feature_router import FeatureRouter, check_router_draft

        router = FeatureRouter.load(resolve_path(model_cfg.path, role))
        check_router_draft(router, config.models.draft, allow_foreign=model_cfg.allow_foreign_router, where=f"models.{role}")
        return router
    loaded = load_model("AutoModelForSequenceClassification", model_cfg, role)
    return ClassifierRouter(loaded, config.separator, annotate=router_annotates(resolve_path(model_cfg.path, role)))
