"""Waiting for a model server that went away (arbitrage/servers/http_client.py): the
requests in flight share one health poll, resume when the server answers, and fail
with a message naming the server and the time once `wait_s` has passed. The HTTP cases
use a real server on 127.0.0.1 that is closed and reopened on the same port."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arbitrage.servers.http_client import JsonHttpClient, ServerUnreachable, ServerWatch


class FakeClock:
    """Time that moves only when someone sleeps, so deadlines are exact and tests instant."""

    def __init__(self):
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_concurrent_waiters_share_one_poll_and_all_resume():
    clock = FakeClock()
    probes = []
    entered = threading.Barrier(16)

    def probe():
        probes.append(clock.now)
        return None if len(probes) > 5 else "connection refused"

    watch = ServerWatch("http://127.0.0.1:9", probe, wait_s=60, clock=clock, sleep=clock.sleep)

    def request():
        entered.wait()
        watch.wait_until_up("connection refused")
        return True

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(lambda _: request(), range(16)))
    # One poller: six probes in all (five failures, then the answer), not six per request.
    assert len(probes) == watch.polls == 6
    assert probes == sorted(probes) and clock.now < 60


def test_the_wait_ends_at_the_deadline_with_the_server_and_the_time_named():
    clock = FakeClock()
    watch = ServerWatch("http://127.0.0.1:9", lambda: "ConnectError: refused", wait_s=30, clock=clock, sleep=clock.sleep)
    with pytest.raises(ServerUnreachable, match=r"the server at http://127.0.0.1:9 was unreachable for 30 s "
                                                r"\(servers.wait_s is 30\); last error: ConnectError: refused"):
        watch.wait_until_up("refused")
    assert clock.now == pytest.approx(30)
    polls = watch.polls
    # Past the deadline a later request fails at once, after a single look at the server.
    with pytest.raises(ServerUnreachable):
        watch.wait_until_up("refused")
    assert watch.polls == polls + 1 and clock.now == pytest.approx(30)


def test_a_reply_ends_the_outage_so_the_next_one_gets_a_fresh_wait():
    clock = FakeClock()
    answers = iter(["down", "down", None])
    watch = ServerWatch("http://127.0.0.1:9", lambda: next(answers, None), wait_s=10, clock=clock, sleep=clock.sleep)
    watch.wait_until_up("down")
    clock.sleep(100)  # long after: the earlier outage must not count against a new one
    watch.wait_until_up("down")
    watch.server_answered()
    assert clock.now == pytest.approx(100 + 0.2 + 0.4)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self._reply({"status": "ok"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self._reply({"echo": json.loads(self.rfile.read(length))})

    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.server
def test_requests_to_a_server_that_comes_back_within_the_wait_succeed():
    port = _free_port()
    client = JsonHttpClient(f"http://127.0.0.1:{port}", wait_s=20, max_retries=2)
    restarted: list[ThreadingHTTPServer] = []

    def start_later():
        time.sleep(1.0)
        restarted.append(_serve(port))

    threading.Thread(target=start_later, daemon=True).start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: client.post_json("/v1/completions", {"i": i}), range(8)))
        waited = time.monotonic() - started
        assert [r["echo"]["i"] for r in replies] == list(range(8))
        assert 1.0 <= waited < 5
        assert client.watch.polls <= 10  # one poller at 0.2 s, 0.4 s, ... backoff, not one per request
    finally:
        client.close()
        for server in restarted:
            server.shutdown()
            server.server_close()


@pytest.mark.server
def test_requests_fail_after_the_wait_when_the_server_stays_away():
    port = _free_port()
    client = JsonHttpClient(f"http://127.0.0.1:{port}", wait_s=0.6, max_retries=3)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client.post_json, "/v1/completions", {}) for _ in range(4)]
        errors = []
        for future in futures:
            with pytest.raises(ServerUnreachable) as caught:
                future.result()
            errors.append(str(caught.value))
    assert 0.6 <= time.monotonic() - started < 4
    assert all(f"the server at http://127.0.0.1:{port} was unreachable for" in e for e in errors)
    client.close()
