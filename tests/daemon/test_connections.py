"""Connection limits of the HTTP server, in-process on a real socket with raw clients:
slow and idle clients are closed, the oldest idle ones make room for new ones, and what
was closed is logged with counts, not a line each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evercron.daemon.connections import (
    ACCEPT_BACKLOG,
    DAEMON_FDS,
    MIN_CONNECTIONS,
    ConnectionGuard,
    connection_limit,
)
from evercron.scheduler.slots import reserved_descriptors
from tests.daemon import http_server

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
SLOW_REQUEST = b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n"


_slow_started: list[float] = []


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """Answers at once, or after 1.5 s on /slow (longer than the tests' header_timeout)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        _slow_started.append(time.monotonic())
        await asyncio.sleep(1.5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answered"})


@contextlib.contextmanager
def serving(guard: ConnectionGuard) -> Iterator[tuple[str, int]]:
    """`_app` served with `guard`; yields the address."""
    # A long keep-alive, so that any closing seen is the guard's, not uvicorn's.
    with http_server.serving(_app, guard, timeout_keep_alive=60) as served:
        yield served.address


def _connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


def _closed_within(client: socket.socket, seconds: float) -> bool:
    """Whether the server closes `client` within `seconds` (it sends nothing before)."""
    client.settimeout(seconds)
    try:
        return client.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _still_open(client: socket.socket) -> bool:
    """Not closed by the server so far (nothing to read, no end of stream)."""
    poll = select.poll()  # not select(): descriptors may be above FD_SETSIZE
    poll.register(client, select.POLLIN)
    return not poll.poll(0)


def _answer(client: socket.socket, request: bytes = REQUEST) -> bytes:
    """Send `request`; the whole response (chunked: it ends with the empty chunk)."""
    client.sendall(request)
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = client.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def test_a_connection_that_sends_nothing_is_closed_after_header_timeout() -> None:
    with serving(ConnectionGuard(header_timeout=1.0, limit=100)) as address:
        client = _connect(address)
        began = time.monotonic()
        assert _closed_within(client, 10)
        waited = time.monotonic() - began
        client.close()
    assert 0.9 < waited < 5


def test_bytes_trickling_in_do_not_keep_a_connection_open() -> None:
    with serving(ConnectionGuard(header_timeout=1.0, limit=100)) as address:
        slow = _connect(address)
        began = time.monotonic()
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < len(REQUEST) - 1 and _still_open(slow):
                slow.sendall(REQUEST[sent : sent + 1])  # never the last byte
                sent += 1
                time.sleep(0.1)
        assert _closed_within(slow, 10)
        waited = time.monotonic() - began
        slow.close()
        with _connect(address) as client:
            assert _answer(client).startswith(b"HTTP/1.1 200")
    assert 0.9 < waited < 5
    assert sent < len(REQUEST) - 1  # closed while it still trickled


def test_the_time_for_a_next_request_counts_from_the_previous_response() -> None:
    with serving(ConnectionGuard(header_timeout=1.0, limit=100)) as address:
        client = _connect(address)
        began = time.monotonic()
        assert _answer(client, SLOW_REQUEST).startswith(b"HTTP/1.1 200")  # 1.5 s busy
        answered = time.monotonic()
        assert answered - began > 1.4  # longer than header_timeout, yet not cut
        assert _answer(client).startswith(b"HTTP/1.1 200")  # kept alive
        answered = time.monotonic()
        assert _closed_within(client, 10)  # no next request (uvicorn's keep-alive: 60 s)
        waited = time.monotonic() - answered
        client.close()
    assert 0.9 < waited < 5


def test_past_the_limit_the_oldest_idle_connection_is_closed_not_the_new_one() -> None:
    with serving(ConnectionGuard(header_timeout=60, limit=5)) as address:
        idle = [_connect(address) for _ in range(5)]  # accepted in this order
        with _connect(address) as newcomer:
            assert _answer(newcomer).startswith(b"HTTP/1.1 200")
        assert _closed_within(idle[0], 5)
        assert [_still_open(client) for client in idle[1:]] == [True] * 4
        for client in idle:
            client.close()


def test_a_new_connection_is_refused_only_when_every_other_is_busy() -> None:
    with serving(ConnectionGuard(header_timeout=60, limit=2)) as address:
        _slow_started.clear()
        busy = [_connect(address), _connect(address)]
        for client in busy:
            client.sendall(SLOW_REQUEST)
        deadline = time.monotonic() + 10
        while len(_slow_started) < 2:  # both requests are being answered
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with _connect(address) as newcomer:
            assert _closed_within(newcomer, 1)
        for client in busy:
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                chunk = client.recv(65536)
                assert chunk
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
            client.close()


def test_closed_connections_are_logged_with_counts_not_a_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="evercron.daemon")
    guard = ConnectionGuard(header_timeout=60, limit=5, report_interval=0.5)
    with serving(guard) as address:
        began = time.monotonic()
        clients = [_connect(address) for _ in range(200)]
        while guard.closed_connections.totals["idle"] < 195:
            assert time.monotonic() < began + 10, guard.closed_connections.totals
            time.sleep(0.05)
        took = time.monotonic() - began
        time.sleep(1)  # the counts of the rest are told within report_interval
        lines = [r.getMessage() for r in caplog.records if "HTTP connections" in r.getMessage()]
        for client in clients:
            client.close()
    counts = [int(n) for line in lines for n in re.findall(r"closed (\d+) idle the longest", line)]
    assert sum(counts) == 195, lines
    assert 2 <= len(lines) <= 2 + took / 0.5, lines  # the first at once, then one per 0.5 s


def test_counts_not_told_yet_are_logged_when_the_server_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="evercron.daemon")
    guard = ConnectionGuard(header_timeout=60, limit=5, report_interval=3600)
    with serving(guard) as address:
        clients = [_connect(address) for _ in range(50)]
        deadline = time.monotonic() + 10
        while guard.closed_connections.totals["idle"] < 45:
            assert time.monotonic() < deadline, guard.closed_connections.totals
            time.sleep(0.05)
        for client in clients:
            client.close()
    lines = [r.getMessage() for r in caplog.records if "HTTP connections" in r.getMessage()]
    counts = [int(n) for line in lines for n in re.findall(r"closed (\d+) idle the longest", line)]
    assert (len(lines), sum(counts)) == (2, 45), lines


def test_the_connection_limit_leaves_the_scheduler_its_descriptors() -> None:
    room = 1024 - 512 - DAEMON_FDS - 4 * ACCEPT_BACKLOG  # and sockets not yet counted
    assert connection_limit(1000, reserved_fds=512, soft=1024) == room
    assert connection_limit(1000, reserved_fds=3000, soft=8192) == 1000
    assert connection_limit(1000, reserved_fds=8000, soft=8192) == MIN_CONNECTIONS
    assert connection_limit(50, reserved_fds=512, soft=1 << 20) == 50


def test_jobs_connections_and_the_daemon_fit_in_the_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    tried = [limit for limit in (1024, 2048, 4096, 16384) if limit <= hard]
    try:
        for limit in tried:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            jobs = reserved_descriptors()
            connections = connection_limit(1000, jobs)
            assert jobs + connections + DAEMON_FDS + 4 * ACCEPT_BACKLOG <= limit
            assert connections == (1000 if limit >= 2048 else 192), limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert tried[:1] == [1024]


def test_out_of_descriptors_idle_connections_make_room_and_the_log_stays_short(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("capped_server.py")), "128"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert server.stdout is not None
        address = ("127.0.0.1", int(server.stdout.readline()))
        idle = [_connect(address) for _ in range(300)]  # more than 128 descriptors
        with _connect(address) as client:
            client.settimeout(20)
            assert _answer(client).startswith(b"HTTP/1.1 200")
        for sock in idle:
            sock.close()
    finally:
        server.kill()
        server.wait(timeout=30)
    text = log_path.read_text()
    assert "accept() found no free descriptor" in text, text
    assert "Traceback" not in text and len(text.splitlines()) <= 10, text
