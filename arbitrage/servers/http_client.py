"""A small JSON-over-HTTP client for model servers: pooled connections, timeouts,
retries with exponential backoff on 5xx (not on a reply that is merely slow), a wait
for a server that went away, API key from an env var.

A server that cannot be reached (refused connection, dropped mid-reply: it died or is
restarting) is waited for rather than failing the requests in flight: one of them polls
`GET /health` with backoff (sglang python/sglang/srt/entrypoints/http_server.py answers
200 when up and 503 while starting; vLLM's api_server and `arbitrage serve` answer 200)
while every other request to that server waits on the same poll. When the server
answers, each resends its request; when it stays unreachable for `wait_s`
(`servers.wait_s` in the config), they fail with ServerUnreachable, and so does every
later request that finds it down, at once, until it answers again.

Plain httpx rather than the openai / langchain-openai clients: the scoring endpoints
(sglang `/classify`, vLLM `/pooling`) are not OpenAI API calls, and for completions we
need fields those clients drop or hide (sglang's `matched_stop`, vLLM's `stop_reason`)
and the raw JSON, so a malformed reply is reported by field name.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time

import httpx

from arbitrage.config import ConfigError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
HEALTH_PATH = "/health"
HEALTH_TIMEOUT_S = 30.0  # sglang's /health runs a one-token generation when the server is idle
FIRST_POLL_S = 0.2
MAX_POLL_S = 2.0


class BackendError(RuntimeError):
    """A model server failed or replied with something we cannot use.

    The message names the server URL and, for malformed replies, the field.
    """


class ServerUnreachable(BackendError):
    """The server did not answer for the whole wait; the message says for how long."""


class ServerWatch:
    """Whether one server is reachable, shared by every request to it.

    The first request that finds the server gone starts an outage and polls its health
    endpoint; requests that fail meanwhile wait for that poll's verdict instead of
    polling too. The outage ends when the server answers (requests resend) or when it
    has lasted `wait_s` (requests fail, and later ones fail at once while it lasts).
    """

    def __init__(self, base_url: str, probe, wait_s: float, *, clock=time.monotonic, sleep=time.sleep):
        self.base_url = base_url
        self.wait_s = wait_s
        self._probe = probe  # () -> None when the server answers, else a description of the failure
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._down_since: float | None = None
        self._polling = False
        self._recoveries = 0
        self._recovered_at = float("-inf")
        self.polls = 0  # health requests sent, for tests and logs

    def server_answered(self) -> None:
        """A request got a reply: any outage is over."""
        if self._down_since is None:
            return
        with self._lock:
            self._end_outage()

    def wait_until_up(self, failure: str, failed_at: float | None = None) -> None:
        """Called after a request could not reach the server (at `failed_at`, by this
        watch's clock; now if not given). Returns once the server answers its health
        check, or at once if it has answered since the failure; raises ServerUnreachable
        once it has been unreachable for `wait_s`."""
        failed_at = self._clock() if failed_at is None else failed_at
        with self._lock:
            if self._recovered_at >= failed_at:
                return  # the failure belongs to an outage that is already over
            now = self._clock()
            if self._down_since is None:
                self._down_since = now
                log.warning("%s is unreachable (%s); waiting up to %gs for %s%s to answer (servers.wait_s)",
                            self.base_url, failure, self.wait_s, self.base_url, HEALTH_PATH)
            recoveries = self._recoveries
            while self._polling:
                self._changed.wait()
                if self._recoveries != recoveries:
                    return
            self._polling = True
            deadline = self._down_since + self.wait_s
        problem = failure
        try:
            problem = self._poll(deadline, failure)
        finally:
            with self._lock:
                self._polling = False
                if problem is None:
                    self._end_outage()
                down_s = 0.0 if self._down_since is None else self._clock() - self._down_since
                self._changed.notify_all()
        if problem is not None:
            raise ServerUnreachable(
                f"the server at {self.base_url} was unreachable for {down_s:.0f} s "
                f"(servers.wait_s is {self.wait_s:g}); last error: {problem}"
            )

    def _poll(self, deadline: float, problem: str) -> str | None:
        """None once the server answers; else the last failure, when the deadline has passed."""
        delay = FIRST_POLL_S
        while True:
            self.polls += 1
            answer = self._probe()
            if answer is None:
                return None
            problem = answer
            remaining = deadline - self._clock()
            if remaining <= 0:
                return problem
            self._sleep(min(delay, remaining))
            delay = min(MAX_POLL_S, delay * 2)

    def _end_outage(self) -> None:  # with the lock held
        if self._down_since is not None:
            log.warning("%s answers again after %.1fs", self.base_url, self._clock() - self._down_since)
            self._down_since = None
            self._recoveries += 1
            self._recovered_at = self._clock()
            self._changed.notify_all()


class JsonHttpClient:
    """Thread-safe: one pooled httpx.Client shared by every caller."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_connections: int = 64,
        wait_s: float = 120.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.watch = ServerWatch(self.base_url, self._health_problem, wait_s)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            # Model servers are local or explicitly configured; a proxy from the
            # environment would only break loopback.
            trust_env=False,
        )

    @classmethod
    def for_model(cls, model_cfg, **overrides) -> "JsonHttpClient":
        """Build from a ModelConfig: base_url, api_key_env, timeout_s, max_retries
        (and, as an override, the run's `servers.wait_s`)."""
        api_key = None
        if model_cfg.api_key_env:
            api_key = os.environ.get(model_cfg.api_key_env)
            if not api_key:
                raise ConfigError(
                    f"api_key_env names the environment variable {model_cfg.api_key_env!r}, which is not set"
                )
        options = {"api_key": api_key, "timeout_s": model_cfg.timeout_s, "max_retries": model_cfg.max_retries}
        options.update(overrides)
        return cls(model_cfg.base_url, **options)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def post_json(self, path: str, payload: dict, *, retries: int | None = None):
        return self._request("POST", path, payload, retries)

    def get_json(self, path: str, *, retries: int | None = None):
        return self._request("GET", path, None, retries)

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, payload: dict | None, retries: int | None):
        """Send; a 5xx is retried `retries` times with backoff, an unreachable server is
        waited for (the watch) and the request resent, `retries` times too."""
        retries = self.max_retries if retries is None else retries
        url = self.url(path)
        last_problem = ""
        attempt = 0
        unreachable = False
        while attempt <= retries:
            if attempt and not unreachable:
                self._sleep_before(attempt, url, last_problem)
            attempt += 1
            unreachable = False
            try:
                response = self._client.request(method, path, json=payload)
            except httpx.ConnectTimeout as error:
                last_problem = f"timed out connecting ({type(error).__name__})"
                unreachable, failed_at = True, time.monotonic()
            except httpx.TimeoutException as error:
                # The server took the request and is still working on it: sending it again
                # would only add load, so a slow reply is final.
                raise BackendError(
                    f"{method} {url} timed out after {self.timeout_s:g}s waiting for the reply "
                    f"({type(error).__name__}); raise timeout_s if the server is just busy"
                ) from None
            except httpx.TransportError as error:
                last_problem = f"connection failed ({type(error).__name__}: {error})"
                unreachable, failed_at = True, time.monotonic()
            if unreachable:
                if attempt <= retries:
                    self.watch.wait_until_up(last_problem, failed_at)
                continue
            self.watch.server_answered()
            if response.status_code in RETRY_STATUS:
                last_problem = f"HTTP {response.status_code}: {_error_text(response)}"
                continue
            if response.status_code >= 400:
                raise BackendError(f"{method} {url} failed with HTTP {response.status_code}: {_error_text(response)}")
            try:
                return response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise BackendError(
                    f"{method} {url} replied with a body that is not JSON: {response.text[:200]!r}"
                ) from None
        raise BackendError(f"{method} {url} failed after {retries + 1} attempts; last error: {last_problem}")

    def _health_problem(self) -> str | None:
        """None when the server answers its health check (a server without one answers
        404, which still shows it is up); else what went wrong."""
        try:
            response = self._client.get(HEALTH_PATH, timeout=min(self.timeout_s, HEALTH_TIMEOUT_S))
        except httpx.TransportError as error:  # timeouts included
            return f"GET {self.url(HEALTH_PATH)}: {type(error).__name__}: {error}"
        if response.status_code >= 500:
            return f"GET {self.url(HEALTH_PATH)}: HTTP {response.status_code}"
        return None

    def _sleep_before(self, attempt: int, url: str, problem: str) -> None:
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        # Jitter keeps many concurrent problems from retrying in lockstep.
        delay *= 0.5 + random.random() / 2
        log.warning("%s: %s; retry %d in %.2fs", url, problem, attempt, delay)
        time.sleep(delay)


def _error_text(response: httpx.Response) -> str:
    """The server's own error message when it sent one (OpenAI, sglang and vLLM shapes)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if "message" in body:
            return str(body["message"])[:300]
    return json.dumps(body)[:300]
