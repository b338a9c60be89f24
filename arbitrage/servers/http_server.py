"""`arbitrage serve`: one in-process model (any Generator, PRM or Router) over HTTP,
speaking `api: arbitrage` (servers/wire/arbitrage.py reads its requests and writes its
replies, with the functions the client dialect uses).

Endpoints:
- `GET /health` -> `{"status": "ok"}`; `GET /v1/models` -> OpenAI model list.
- `POST /v1/completions` (draft/target), `POST /v1/arbitrage/end_session`,
  `POST /v1/arbitrage/prm`, `POST /v1/arbitrage/router`: see servers/wire/arbitrage.py.
  A PRM's `last_only` reward comes from its `score_last` when it has one.
- `GET /v1/arbitrage/stats`: how many requests each model call batched.

Concurrent requests meet in a Batcher (servers/batching.py), so a backend with a
batched method runs them as one forward pass. Stdlib http.server keeps the server free
of extra dependencies; it binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from arbitrage.config import Config, ModelConfig
from arbitrage.protocols import SamplingParams
from arbitrage.servers.batching import QueueFull, generator_batcher, prm_batcher, router_batcher
from arbitrage.servers.wire.arbitrage import (
    END_SESSION_PATH,
    PRM_PATH,
    ROUTER_PATH,
    decode_end_session_request,
    decode_prm_request,
    decode_router_request,
    decode_step_request,
    encode_end_session_reply,
    encode_prm_reply,
    encode_router_reply,
)
from arbitrage.servers.wire.completions import COMPLETIONS_PATH, encode_completion_reply
from arbitrage.servers.wire.fields import RequestError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
GENERATOR_ROLES = ("draft", "target")


class ModelServer:
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
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self.httpd.server_address[0]

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ModelServer":
        # A short poll interval keeps stop() quick; idle cost is a few wakeups a second.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"serve-{self.role}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._close()

    def _close(self) -> None:
        self.httpd.server_close()
        self.batcher.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

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
            PRM_PATH: ("prm", self._prm),
            ROUTER_PATH: ("router", self._router),
        }
        if path not in routes:
            return 404, _error(f"no endpoint {method} {path} on this server")
        if method != "POST":
            return 405, _error(f"{path} takes POST")
        kind, handler = routes[path]
        serves = "generator" if self.role in GENERATOR_ROLES else self.role
        if kind != serves:
            return 404, _error(f"this server serves the {self.role} model; {path} needs a {kind} server")
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

    def _router(self, body: dict) -> dict:
        scores = self.batcher.submit_many(decode_router_request(body))
        return encode_router_reply(scores, self.name)


def _error(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind}}


def _handler_for(server: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse pooled connections
        disable_nagle_algorithm = True  # replies are small; do not wait for a delayed ACK
        timeout = 300  # an idle keep-alive connection frees its thread after this

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            try:
                body = self._read_body() if method == "POST" else None
                status, reply = server.handle(method, path, body)
            except RequestError as error:
                status, reply = error.status, _error(str(error))
            except QueueFull as error:
                status, reply = 503, _error(f"server busy: {error}", "server_busy")
            except Exception as error:
                log.exception("%s %s failed", method, path)
                status, reply = 500, _error(f"{type(error).__name__}: {error}", "server_error")
            self._send(status, reply)

        def _read_body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise RequestError(f"request body of {length} bytes is over the {MAX_BODY_BYTES} limit", status=413)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise RequestError(f"request body is not valid JSON: {error}") from None

        def _send(self, status: int, reply: dict) -> None:
            try:
                data = json.dumps(reply, allow_nan=False).encode()
            except ValueError as error:
                status, data = 500, json.dumps(_error(f"reply not encodable: {error}", "server_error")).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout) or went away

        def log_message(self, format: str, *args) -> None:
            if server.verbose:
                log.info("%s %s", self.address_string(), format % args)

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
