"""The HTTP drain of a hot upgrade, in-process on a real socket with raw clients: no
request that reached the old process goes unanswered, whatever moment the drain begins."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from evercron.daemon.http import HttpServer

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def _slow_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers after a while, as an endpoint waiting on the store does."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.3)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answered"})


class _Server(HttpServer):
    """Drains when `begin_drain` is set instead of polling `should_exit` every 0.1 s, so
    that a test can start the drain at an exact loop step."""

    begin_drain: asyncio.Event

    async def main_loop(self) -> None:
        await self.begin_drain.wait()
        self.drain()


def _serve_in_thread(server: _Server, sock: socket.socket) -> tuple[threading.Thread, Any]:
    """Serve on `sock` in a thread with its own loop; returns the thread and the loop."""
    ready = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        server.begin_drain = asyncio.Event()
        loops.append(asyncio.get_running_loop())
        ready.set()
        await server.serve(sockets=[sock])
        # Then the process would exit: nothing more is answered.

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    assert ready.wait(10)
    while not server.started:
        time.sleep(0.01)
    return thread, loops[0]


def _read_all(client: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := client.recv(65536):
            data += chunk
    except ConnectionResetError:
        data += b"<reset>"
    return data


def _read_response(client: socket.socket) -> bytes:
    """One whole response of `_slow_app` (chunked: it ends with the empty chunk)."""
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = client.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_a_connection_accepted_as_the_drain_begins_is_answered(
    listening: socket.socket,
) -> None:
    holder: dict[str, _Server] = {}

    class DrainOnAccept(H11Protocol):
        """Begins the drain right after the accept, before the connection is made (the
        window between the two is a few loop steps)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            holder["server"].begin_drain.set()

    server = _Server(uvicorn.Config(_slow_app, http=DrainOnAccept, log_level="warning"))
    holder["server"] = server
    client = socket.create_connection(listening.getsockname(), timeout=10)
    client.sendall(REQUEST)  # already queued when the server starts
    thread, _ = _serve_in_thread(server, listening)
    try:
        response = _read_all(client)
    finally:
        client.close()
        thread.join(timeout=30)
    assert response.startswith(b"HTTP/1.1 200"), response
    assert b"answered" in response
    assert not thread.is_alive()


@contextlib.contextmanager
def _client_of_a_serving_server(
    listening: socket.socket,
) -> Iterator[tuple[_Server, asyncio.AbstractEventLoop, socket.socket]]:
    """A `_slow_app` server serving `listening` and a client connected to it; at the end
    the client is closed and the server must have ended (its drain done)."""
    server = _Server(uvicorn.Config(_slow_app, log_level="warning"))
    thread, loop = _serve_in_thread(server, listening)
    client = socket.create_connection(listening.getsockname(), timeout=10)
    try:
        yield server, loop, client
    finally:
        client.close()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_request_still_arriving_when_the_drain_begins_is_answered(
    listening: socket.socket,
) -> None:
    with _client_of_a_serving_server(listening) as (server, loop, client):
        client.sendall(REQUEST[:20])
        while not server.server_state.connections:
            time.sleep(0.01)
        time.sleep(0.2)  # the first bytes are read: not idle, no request yet
        loop.call_soon_threadsafe(server.begin_drain.set)
        time.sleep(0.2)
        client.sendall(REQUEST[20:])
        response = _read_all(client)
    assert response.startswith(b"HTTP/1.1 200"), response


def test_an_idle_keep_alive_connection_is_closed_after_the_grace(
    listening: socket.socket,
) -> None:
    with _client_of_a_serving_server(listening) as (server, loop, client):
        client.sendall(REQUEST)
        first = _read_response(client)
        began = time.monotonic()
        loop.call_soon_threadsafe(server.begin_drain.set)
        rest = _read_all(client)  # the server closes the idle connection
        waited = time.monotonic() - began
    assert first.startswith(b"HTTP/1.1 200")
    assert rest == b""
    assert 1.5 < waited < 10
