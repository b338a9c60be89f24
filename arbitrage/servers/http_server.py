"""`arbitrage serve`: one in-process model (any Generator, PRM or Router) over HTTP,
speaking `api: arbitrage` (servers/wire/arbitrage.py reads its requests and writes its
replies, with the functions the client dialect uses).

Endpoints:
- `GET /health` -> `{"status": "ok"}`; `GET /v1/models` -> OpenAI model list.
- `POST /v1/completions` (draft/target), `POST /v1/arbitrage/end_session`,
  `POST /v1/arbitrage/continuation` (draft/target: `score_continuation`),
  `POST /v1/arbitrage/prm`, `POST /v1/arbitrage/router`: see servers/wire/arbitrage.py.
  A PRM's `last_only` reward comes from its `score_last` when it has one.
- `GET /v1/arbitrage/stats`: how many requests each model call batched.

Concurrent requests meet in a Batcher (servers/batching.py), so a backend with a
batched method runs them as one forward pass. It binds 127.0.0.1 unless told otherwise
(servers/http_service.py).
"""

from __future__ import annotations

import logging
from typing import Any

from arbitrage.config import Config, ModelConfig
from arbitrage.protocols import SamplingParams
from arbitrage.servers.batching import QueueFull, generator_batcher, prm_batcher, router_batcher
from arbitrage.servers.wire.arbitrage import (
    CONTINUATION_PATH,
    END_SESSION_PATH,
    PRM_PATH,
    ROUTER_PATH,
    decode_continuation_request,
    decode_end_session_request,
    decode_prm_request,
    decode_router_request,
    decode_step_request,
    encode_continuation_reply,
    encode_end_session_reply,
    encode_prm_reply,
    encode_router_reply,
)
from arbitrage.servers.wire.completions import COMPLETIONS_PATH, encode_completion_reply
from arbitrage.servers.http_service import HttpService, JsonHandler, error_body
from arbitrage.servers.wire.fields import RequestError

log = logging.getLogger(__name__)

GENERATOR_ROLES = ("draft", "target")


class ModelServer(HttpService):
    """Serve one loaded model. `start()` runs it on a background thread (tests, benchmarks);
    `serve_forever()` blocks (the CLI)."""

    def __init__(
        self,
        role: str,
        model,
        *,
        config: Config,
        model_cfg: ModelConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_batch: int = 32,
        verbose: bool = False,
    ):
        if role not in ("draft", "target", "prm", "router"):
            raise ValueError(f"role must be draft, target, prm or router, got {role!r}")
        self.role = role
        self.model = model
        self.config = config
        self.model_cfg = model_cfg if model_cfg is not None else config.models.get(role)
        self.name = (self.model_cfg.model or self.model_cfg.path) if self.model_cfg is not None else role
        self.verbose = verbose
        if role in GENERATOR_ROLES:
            self.batcher = generator_batcher(model, max_batch=max_batch)
        elif role == "prm":
            self.batcher = prm_batcher(model, max_batch=max_batch)
        else:
            self.batcher = router_batcher(model, max_batch=max_batch)
        super().__init__(_handler_for(self), host=host, port=port, name=f"serve-{role}")

    def on_close(self) -> None:
        self.batcher.close()

    # ---- request handling (called from handler threads) ----

    def handle(self, method: str, path: str, body: Any) -> tuple[int, dict]:
        if method == "GET" and path == "/health":
            return 200, {"status": "ok", "role": self.role}
        if method == "GET" and path == "/v1/models":
            card = {"id": self.name, "object": "model", "owned_by": "arbitrage", "role": self.role}
            return 200, {"object": "list", "data": [card]}
        if method == "GET" and path == "/v1/arbitrage/stats":
            sizes = self.batcher.batch_sizes
            return 200, {"role": self.role, "batches": len(sizes), "requests": sum(sizes), "max_batch": max(sizes, default=0)}
        routes = {
            COMPLETIONS_PATH: ("generator", self._completions),
            END_SESSION_PATH: ("generator", self._end_session),
            CONTINUATION_PATH: ("generator", self._continuation),
            PRM_PATH: ("prm", self._prm),
            ROUTER_PATH: ("router", self._router),
        }
        if path not in routes:
            return 404, error_body(f"no endpoint {method} {path} on this server")
        if method != "POST":
            return 405, error_body(f"{path} takes POST")
        kind, handler = routes[path]
        serves = "generator" if self.role in GENERATOR_ROLES else self.role
        if kind != serves:
            return 404, error_body(f"this server serves the {self.role} model; {path} needs a {kind} server")
        if not isinstance(body, dict):
            raise RequestError("the request body should be a JSON object")
        return 200, handler(body)

    def _completions(self, body: dict) -> dict:
        prompt = self.model_cfg.prompt if self.model_cfg is not None else None
        default = self.model_cfg.sampling.params() if self.model_cfg is not None else SamplingParams()
        request, with_logprobs = decode_step_request(
            body, separator=self.config.separator, prompt=prompt, default_sampling=default
        )
        output = self.batcher.submit(request)
        return encode_completion_reply(output, self.name, self.config.separator, with_logprobs=with_logprobs)

    def _end_session(self, body: dict) -> dict:
        session = decode_end_session_request(body)
        self.model.end_session(session)
        return encode_end_session_reply(session)

    def _prm(self, body: dict) -> dict:
        items = decode_prm_request(body)
        return encode_prm_reply(items, self.batcher.submit_many(items), self.name)

    def _continuation(self, body: dict) -> dict:
        if not hasattr(self.model, "score_continuation"):
            raise RequestError(f"the served {self.role} model ({type(self.model).__name__}) cannot score a continuation")
        requests = decode_continuation_request(body)
        return encode_continuation_reply(self.batcher.submit_many(requests), self.name)

    def _router(self, body: dict) -> dict:
        scores = self.batcher.submit_many(decode_router_request(body))
        return encode_router_reply(scores, self.name)


def _handler_for(server: ModelServer):
    class Handler(JsonHandler):
        verbose = server.verbose

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            try:
                body = self.read_json_body() if method == "POST" else None
                status, reply = server.handle(method, path, body)
            except RequestError as error:
                status, reply = error.status, error_body(str(error))
            except QueueFull as error:
                status, reply = 503, error_body(f"server busy: {error}", "server_busy")
            except Exception as error:
                log.exception("%s %s failed", method, path)
                status, reply = 500, error_body(f"{type(error).__name__}: {error}", "server_error")
            self.send_json(status, reply)

    return Handler


def serve(role: str, config: Config, *, host: str = "127.0.0.1", port: int, max_batch: int = 32, verbose: bool = False, on_ready=None) -> None:
    """Load the role's model through the backend factory and serve it until interrupted."""
    from arbitrage.servers.factory import load_model

    model_cfg = config.models.get(role)
    if model_cfg is None:
        raise ValueError(f"the config has no models.{role} to serve")
    model = load_model(role, model_cfg, config)
    server = ModelServer(role, model, config=config, model_cfg=model_cfg, host=host, port=port, max_batch=max_batch, verbose=verbose)
    if on_ready is not None:
        on_ready(server)
    server.serve_forever()
