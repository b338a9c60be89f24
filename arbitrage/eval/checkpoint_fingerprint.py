"""Fingerprints of the local checkpoints a run reads, so a run directory is never resumed
with other weights behind the same path (a retrained router saved over the old one). How
a checkpoint is fingerprinted: servers/checkpoint_fingerprint.py.
"""

from __future__ import annotations

from arbitrage.config import Config
from arbitrage.servers.checkpoint_fingerprint import checkpoint_fingerprint, file_fingerprint

__all__ = ["checkpoint_fingerprint", "file_fingerprint", "run_checkpoints", "changed_roles"]


def run_checkpoints(config: Config) -> dict[str, dict[str, str]]:
    """Fingerprints of the local checkpoints of the roles the run's policy calls."""
    out = {}
    for role in config.policy.roles:
        model_cfg = config.models.get(role)
        fingerprint = checkpoint_fingerprint(model_cfg) if model_cfg is not None else None
        if fingerprint is not None:
            out[role] = fingerprint
    return out


def changed_roles(previous: dict[str, dict[str, str]], current: dict[str, dict[str, str]]) -> list[str]:
    """Roles fingerprinted in both whose files differ."""
    return [role for role in current if role in previous and previous[role] != current[role]]
