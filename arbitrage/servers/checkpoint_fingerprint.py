"""Fingerprints of local checkpoints: which weights stand behind a path, so a run
directory is never resumed with other weights (eval/checkpoint_fingerprint.py) and a
fitted router knows the models it was fitted on (`check_fitted_on`, servers/feature_router.py).

A file's fingerprint hashes its size and its first and last MiB: any retraining rewrites
the safetensors header's neighbourhood and the tensors at both ends, and a multi-GB
checkpoint still costs milliseconds, not a full read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from arbitrage.config import ModelConfig
from arbitrage.servers.transformers_backend.loading import ModelLoadError, resolve_path

SAMPLE_BYTES = 1 << 20


def file_fingerprint(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def checkpoint_fingerprint(model_cfg: ModelConfig) -> dict[str, str] | None:
    """{file name: fingerprint} of the files at the top of a local checkpoint directory
    (or of one local file); None where nothing local backs the entry (an HTTP server, a
    hub id, a missing path: loading reports that one)."""
    if model_cfg.backend != "transformers":
        return None
    return path_fingerprint(model_cfg.path)


def path_fingerprint(path: str) -> dict[str, str] | None:
    """`checkpoint_fingerprint` of whatever local checkpoint `path` names, whoever loads it."""
    try:
        local = Path(resolve_path(path, "fingerprint"))
    except ModelLoadError:
        return None
    if local.is_file():
        return {local.name: file_fingerprint(local)}
    if not local.is_dir():
        return None
    return {f.name: file_fingerprint(f) for f in sorted(local.iterdir()) if f.is_file()}
