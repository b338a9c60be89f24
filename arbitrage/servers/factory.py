"""Build the models a policy needs from the config, dispatching on each role's backend.

A backend module exposes `load_generator(model_cfg, config)`, `load_prm(model_cfg, config)`
and `load_router(model_cfg, config)` (with `target=` for a router that reads the target
model); adding a backend is one module and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from arbitrage.config import Config, ConfigError, ModelConfig
from arbitrage.protocols import PRM, Generator, Router

BACKEND_MODULES = {
    "transformers": "arbitrage.servers.transformers_backend",
    "openai": "arbitrage.servers.openai_backend",
}

_LOADERS = {"draft": "load_generator", "target": "load_generator", "prm": "load_prm", "router": "load_router"}


@dataclass
class ModelSet:
    """The loaded models of one run; roles a policy does not use stay None."""

    draft: Generator | None = None
    target: Generator | None = None
    prm: PRM | None = None
    router: Router | None = None


def load_model(role: str, model_cfg: ModelConfig, config: Config, *, target: Generator | None = None):
    """Load one role's model. A router that reads the target (`router_kind: target_prefill`)
    gets `target`, or loads the config's target itself when none is given."""
    module = importlib.import_module(BACKEND_MODULES[model_cfg.backend])
    if role == "router" and model_cfg.reads_target():
        if target is None:
            target_cfg = config.models.get("target")
            if target_cfg is None:
                raise ConfigError(f"models.router: router_kind '{model_cfg.router_kind}' reads the target "
                                  "model, but the config has no models.target")
            target = load_model("target", target_cfg, config)
        return module.load_router(model_cfg, config, target=target)
    return getattr(module, _LOADERS[role])(model_cfg, config)


def load_models(config: Config, roles: tuple[str, ...] | None = None) -> ModelSet:
    """Load the models the config's policy needs (or exactly `roles`), each once; the
    router last, so a router that reads the target gets the loaded one."""
    wanted = config.required_models() if roles is None else {r: config.models.get(r) for r in roles}
    models = ModelSet()
    for role in sorted(wanted, key=lambda r: r == "router"):
        model_cfg = wanted[role]
        if model_cfg is not None:
            setattr(models, role, load_model(role, model_cfg, config, target=models.target))
    return models
