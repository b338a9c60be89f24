"""Build the models a policy needs from the config, dispatching on each role's backend.

A backend module exposes `load_generator(model_cfg, config)`, `load_prm(model_cfg, config)`
and `load_router(model_cfg, config)`; adding a backend is one module and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from arbitrage.config import Config, ModelConfig
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


def load_model(role: str, model_cfg: ModelConfig, config: Config):
    module = importlib.import_module(BACKEND_MODULES[model_cfg.backend])
    return getattr(module, _LOADERS[role])(model_cfg, config)


def load_models(config: Config, roles: tuple[str, ...] | None = None) -> ModelSet:
    """Load the models the config's policy needs (or exactly `roles`), each once."""
    wanted = config.required_models() if roles is None else {r: config.models.get(r) for r in roles}
    models = ModelSet()
    for role, model_cfg in wanted.items():
        if model_cfg is not None:
            setattr(models, role, load_model(role, model_cfg, config))
    return models
