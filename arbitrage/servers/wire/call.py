"""`Call`: one request of a dialect plus the reading of its reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from arbitrage.servers.http_client import JsonHttpClient

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One POST: its path and body, and `read(reply JSON, url) -> value`. A reply that
    leaves the value open reads as the next `Call` to send, whose value it is."""

    path: str
    body: dict
    read: Callable[[Any, str], "T | Call[T]"]
    retries: int | None = None  # None: the client's configured retries

    def send(self, client: JsonHttpClient) -> T:
        value = self.read(client.post_json(self.path, self.body, retries=self.retries), client.url(self.path))
        return value.send(client) if isinstance(value, Call) else value
