"""What the project's HTTP servers share: `arbitrage serve` for one model
(servers/http_server.py) and the pipeline endpoint (arbitrage/agents/pipeline_server.py).

`HttpService` runs a stdlib ThreadingHTTPServer on a background thread (`start()`, for
tests and benchmarks) or in the foreground (`serve_forever()`, for the CLI); `JsonHandler`
reads JSON request bodies and writes JSON replies; `error_body` is OpenAI's error object,
which OpenAI clients raise with its message. Stdlib http.server keeps the servers free of
extra dependencies; they bind 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from arbitrage.servers.wire.fields import RequestError

log = logging.getLogger(__name__)


def error_body(message: str, kind: str = "invalid_request_error", *, param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class HttpService:
    """A server on (host, port); port 0 picks a free one. Subclasses release their own
    resources in `on_close`, which runs once the server stops."""

    def __init__(self, handler_class: type[BaseHTTPRequestHandler], *, host: str, port: int, name: str):
        self.httpd = ThreadingHTTPServer((host, port), handler_class)
        self.httpd.daemon_threads = True
        self.thread_name = name
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

    def start(self):
        # A short poll interval keeps stop() quick; idle cost is a few wakeups a second.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
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

    def on_close(self) -> None:
        pass

    def _close(self) -> None:
        self.httpd.server_close()
        self.on_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse pooled connections
    disable_nagle_algorithm = True  # replies and streamed events are small; send them at once
    timeout = 300  # an idle keep-alive connection frees its thread after this
    max_body_bytes = 32 * 1024 * 1024
    verbose = False  # log every request

    def read_json_body(self) -> Any:
        """The request's JSON (None without a body); RequestError for too large or not JSON."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_body_bytes:
            raise RequestError(f"request body of {length} bytes is over the {self.max_body_bytes} limit", status=413)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(f"request body is not valid JSON: {error}") from None

    def send_json(self, status: int, reply: dict) -> None:
        try:
            data = json.dumps(reply, allow_nan=False).encode()
        except ValueError as error:
            status, data = 500, json.dumps(error_body(f"reply not encodable: {error}", "server_error")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout) or went away

    def log_message(self, format: str, *args) -> None:
        if self.verbose:
            log.info("%s %s", self.address_string(), format % args)
