"""A small JSON-over-HTTP client for model servers: pooled connections, timeouts,
retries with exponential backoff on connection errors and 5xx (not on a reply that is
merely slow), API key from an env var.

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
import time

import httpx

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class BackendError(RuntimeError):
    """A model server failed or replied with something we cannot use.

    The message names the server URL and, for malformed replies, the field.
    """


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
    ):
        self.base_url = base_url.rstrip("/")
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
        """Build from a ModelConfig: base_url, api_key_env, timeout_s, max_retries."""
        api_key = None
        if model_cfg.api_key_env:
            api_key = os.environ.get(model_cfg.api_key_env)
            if not api_key:
                raise BackendError(
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
        retries = self.max_retries if retries is None else retries
        url = self.url(path)
        last_problem = ""
        for attempt in range(retries + 1):
            if attempt:
                self._sleep_before(attempt, url, last_problem)
            try:
                response = self._client.request(method, path, json=payload)
            except httpx.ConnectTimeout as error:
                last_problem = f"timed out connecting ({type(error).__name__})"
                continue
            except httpx.TimeoutException as error:
                # The server took the request and is still working on it: sending it again
                # would only add load, so a slow reply is final.
                raise BackendError(
                    f"{method} {url} timed out after {self.timeout_s:g}s waiting for the reply "
                    f"({type(error).__name__}); raise timeout_s if the server is just busy"
                ) from None
            except httpx.TransportError as error:
                last_problem = f"connection failed ({type(error).__name__}: {error})"
                continue
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
