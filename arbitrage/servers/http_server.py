"""`arbitrage serve`: one in-process model (any Generator, PRM or Router) over HTTP,
speaking what servers/openai_backend.py sends with `api: arbitrage`.

Endpoints:
- `GET /health` -> `{"status": "ok"}`; `GET /v1/models` -> OpenAI model list.
- `POST /v1/completions` (draft/target): OpenAI completion request and reply. The
  request's `arbitrage: {problem, steps, session}` field is the exact call to
  `Generator.step`; without it a raw-format `prompt` is split back into problem and
  steps using the served config's template. Replies carry sglang's `matched_stop`
  (the separator, or null for EOS) and `usage.completion_tokens`.
- `POST /v1/arbitrage/end_session` `{"session": id}` releases a problem's cache.
- `POST /v1/arbitrage/prm` `{"input": [{"problem", "steps"}], "last_only": false}` ->
  `{"data": [{"index", "rewards": [...]}]}`; with `last_only` one reward, the newest
  step's (the PRM's `score_last` when it has one).
- `POST /v1/arbitrage/router` `{"input": [{"problem", "previous_steps": [{"text",
  "source"}], "draft": {"text", "num_tokens", "finish_reason", "token_logprobs"}}]}` ->
  `{"data": [{"index", "score"}]}`.
- `GET /v1/arbitrage/stats`: how many requests each model call batched.

Concurrent requests meet in a Batcher (servers/batching.py), so a backend with a
batched method runs them as one forward pass. Stdlib http.server keeps the server free
of extra dependencies; it binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from arbitrage.config import Config, ModelConfig
from arbitrage.protocols import AnnotatedStep, RouterQuery, SamplingParams, StepOutput
from arbitrage.servers.batching import QueueFull, StepRequest, generator_batcher, prm_batcher, router_batcher
from arbitrage.servers.prompting import parse_raw_prefix

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
GENERATOR_ROLES = ("draft", "target")


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _need(body: dict, name: str, kind, where: str = "", *, default=...):
    label = f"{where}{name}"
    if name not in body or body[name] is None:
        if default is not ...:
            return default
        raise RequestError(400, f"request field '{label}' is required")
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RequestError(400, f"request field '{label}' should be {names}, got {type(value).__name__}")
    return value


def _string_list(value: Any, label: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RequestError(400, f"request field '{label}' should be a list of strings")
    return value


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
            "/v1/completions": ("generator", self._completions),
            "/v1/arbitrage/end_session": ("generator", self._end_session),
            "/v1/arbitrage/prm": ("prm", self._prm),
            "/v1/arbitrage/router": ("router", self._router),
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
            raise RequestError(400, "the request body should be a JSON object")
        return 200, handler(body)

    def _completions(self, body: dict) -> dict:
        if _need(body, "n", int, default=1) != 1:
            raise RequestError(400, "request field 'n' must be 1")
        if body.get("stream"):
            raise RequestError(400, "request field 'stream' is not supported; send stream: false")
        separator = self.config.separator
        stop = body.get("stop")
        if stop is not None and stop != separator and stop != [separator]:
            raise RequestError(400, f"request field 'stop' must be the configured separator {separator!r}, got {stop!r}")
        max_tokens = _need(body, "max_tokens", int, default=16)
        if max_tokens < 1:
            raise RequestError(400, f"request field 'max_tokens' must be at least 1, got {max_tokens}")
        problem, steps, session = self._step_input(body)
        request = StepRequest(problem, tuple(steps), max_tokens, self._sampling(body), session)
        output: StepOutput = self.batcher.submit(request)
        return _completion_reply(output, self.name, separator, with_logprobs=bool(body.get("logprobs")))

    def _step_input(self, body: dict) -> tuple[str, list[str], str | None]:
        structured = body.get("arbitrage")
        if structured is not None:
            if not isinstance(structured, dict):
                raise RequestError(400, "request field 'arbitrage' should be an object")
            problem = _need(structured, "problem", str, "arbitrage.")
            steps = _string_list(_need(structured, "steps", list, "arbitrage."), "arbitrage.steps")
            session = _need(structured, "session", str, "arbitrage.", default=None)
            return problem, steps, session
        prompt = _need(body, "prompt", str)
        prompt_cfg = self.model_cfg.prompt if self.model_cfg is not None else None
        if prompt_cfg is None or prompt_cfg.format != "raw":
            raise RequestError(400, "this server needs the request field 'arbitrage' {problem, steps} for chat prompts")
        try:
            problem, steps = parse_raw_prefix(prompt_cfg, self.config.separator, prompt)
        except ValueError as error:
            raise RequestError(400, f"request field 'prompt' does not fit the served template: {error}") from None
        return problem, steps, None

    def _sampling(self, body: dict) -> SamplingParams:
        default = self.model_cfg.sampling.params() if self.model_cfg is not None else SamplingParams()
        try:
            return SamplingParams.from_request(body, default)
        except ValueError as error:
            raise RequestError(400, str(error)) from None

    def _end_session(self, body: dict) -> dict:
        session = _need(body, "session", str)
        self.model.end_session(session)
        return {"session": session, "released": True}

    def _prm(self, body: dict) -> dict:
        items = _need(body, "input", list)
        last_only = _need(body, "last_only", bool, default=False)
        parsed = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise RequestError(400, f"request field 'input.{index}' should be an object")
            problem = _need(item, "problem", str, f"input.{index}.")
            steps = _string_list(_need(item, "steps", list, f"input.{index}."), f"input.{index}.steps")
            if last_only and not steps:
                raise RequestError(400, f"request field 'input.{index}.steps' must not be empty with last_only")
            parsed.append((problem, tuple(steps), last_only))
        results = self.batcher.submit_many(parsed)
        data = []
        for index, ((_, steps, _), rewards) in enumerate(zip(parsed, results)):
            rewards = [float(value) for value in rewards]
            expected = 1 if last_only else len(steps)
            if len(rewards) != expected or not all(math.isfinite(v) for v in rewards):
                raise RuntimeError(f"the PRM returned {rewards!r} for {len(steps)} steps")
            data.append({"index": index, "object": "rewards", "rewards": rewards})
        return {"object": "list", "model": self.name, "data": data}

    def _router(self, body: dict) -> dict:
        items = _need(body, "input", list)
        queries = [_router_query(item, index) for index, item in enumerate(items)]
        scores = self.batcher.submit_many(queries)
        data = [{"index": i, "object": "score", "score": float(score)} for i, score in enumerate(scores)]
        return {"object": "list", "model": self.name, "data": data}


def _router_query(item: Any, index: int) -> RouterQuery:
    where = f"input.{index}."
    if not isinstance(item, dict):
        raise RequestError(400, f"request field 'input.{index}' should be an object")
    problem = _need(item, "problem", str, where)
    previous = []
    for i, step in enumerate(_need(item, "previous_steps", list, where)):
        if not isinstance(step, dict):
            raise RequestError(400, f"request field '{where}previous_steps.{i}' should be an object")
        source = _need(step, "source", str, f"{where}previous_steps.{i}.")
        if source not in ("draft", "target"):
            raise RequestError(400, f"request field '{where}previous_steps.{i}.source' must be draft or target")
        previous.append(AnnotatedStep(_need(step, "text", str, f"{where}previous_steps.{i}."), source))
    draft = _need(item, "draft", dict, where)
    finish = _need(draft, "finish_reason", str, f"{where}draft.")
    if finish not in ("separator", "eos", "length"):
        raise RequestError(400, f"request field '{where}draft.finish_reason' must be separator, eos or length")
    logprobs = _need(draft, "token_logprobs", list, f"{where}draft.", default=[])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logprobs):
        raise RequestError(400, f"request field '{where}draft.token_logprobs' should be a list of numbers")
    output = StepOutput(
        text=_need(draft, "text", str, f"{where}draft."),
        num_tokens=_need(draft, "num_tokens", int, f"{where}draft."),
        finish_reason=finish,
        token_logprobs=[float(v) for v in logprobs],
    )
    return RouterQuery(problem=problem, previous_steps=previous, draft=output)


def _completion_reply(output: StepOutput, name: str, separator: str, *, with_logprobs: bool) -> dict:
    finish = "length" if output.finish_reason == "length" else "stop"
    logprobs = None
    if with_logprobs:
        logprobs = {"token_logprobs": list(output.token_logprobs), "tokens": [], "text_offset": [], "top_logprobs": []}
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": name,
        "choices": [
            {
                "index": 0,
                "text": output.text,
                "logprobs": logprobs,
                "finish_reason": finish,
                "matched_stop": separator if output.finish_reason == "separator" else None,
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": output.num_tokens, "total_tokens": output.num_tokens},
    }


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
                raise RequestError(413, f"request body of {length} bytes is over the {MAX_BODY_BYTES} limit")
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise RequestError(400, f"request body is not valid JSON: {error}") from None

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
