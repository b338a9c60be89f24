"""The sglang-router command that spreads one role's requests over its replicas.

    python -m sglang_router.launch_router --worker-urls URL... --host H --port P --policy POLICY

Flags checked against sglang-router 0.3.2 (PyPI wheel, sglang_router/router_args.py
`RouterArgs.add_cli_args`): `--worker-urls` (nargs *), `--host` (defaults to 0.0.0.0, so
it is always passed), `--port`, `--policy` (cache_aware, round_robin, random,
power_of_two, manual). The router answers `GET /readiness` with 200 once at least one
worker is healthy and 503 before; its `/health` is liveness only (sgl-project/sglang
sgl-model-gateway/src/server.rs `readiness`, `health`), so readiness is what is polled.

It forwards `/v1/completions` but has no `/classify` or `/pooling` route (server.rs
`build_app`; checked against the 0.3.2 binary: both answer 404), which is how PRM and
router roles are scored, so only generation roles can be replicated behind it.
"""

from __future__ import annotations

READY_PATH = "/readiness"


def balancer_command(worker_urls: list[str], *, host: str, port: int, policy: str, python: str) -> list[str]:
    return [
        python, "-m", "sglang_router.launch_router",
        "--worker-urls", *worker_urls,
        "--host", host, "--port", str(port),
        "--policy", policy,
    ]  # fmt: skip
