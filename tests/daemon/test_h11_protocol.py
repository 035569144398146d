"""What the drain and the connection limits read of uvicorn's h11 protocol
(`evercron.daemon.h11_protocol`), checked on a real connection at each step of a request:
an upgrade of uvicorn that changes it fails here instead of degrading them in silence."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import h11
import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from evercron.daemon.connections import ConnectionGuard
from evercron.daemon.h11_protocol import (
    GuardedH11Protocol,
    is_answering,
    is_idle,
    waits_for_request,
)
from evercron.daemon.http import HttpServer
from tests.daemon.http_server import Served, serving

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


class _HeldApp:
    """Answers once `release` is set (on the server's loop), so a test can look at a
    connection while its request is being answered."""

    def __init__(self) -> None:
        self.entered = False
        self.release: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.release = asyncio.Event()
        self.entered = True
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answered"})


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 10 s"
        time.sleep(0.01)


def _state(served: Served) -> dict[str, Any]:
    """The one connection's state as read on the server's loop."""

    async def read() -> dict[str, Any]:
        (protocol,) = served.server.server_state.connections
        assert isinstance(protocol, GuardedH11Protocol)
        cycle = protocol.cycle
        return {
            "conn": protocol.conn,
            "waits": waits_for_request(protocol),
            "answering": is_answering(protocol),
            "idle": is_idle(protocol),
            "trailing": protocol.conn.trailing_data,
            "complete": None if cycle is None else cycle.response_complete,
            # The cycle reports a finished response through the hook the guard overrides.
            "hooked": cycle is not None and cycle.on_response == protocol.on_response_complete,
        }

    return served.on_loop(read())


def test_the_request_state_is_read_at_each_step_of_a_request() -> None:
    app = _HeldApp()
    guard = ConnectionGuard(header_timeout=60, limit=10)
    with serving(app, guard) as served, socket.create_connection(served.address) as client:
        _wait_for(lambda: guard.open_count == 1)
        opened = _state(served)
        assert isinstance(opened["conn"], h11.Connection)
        assert (opened["waits"], opened["answering"], opened["idle"]) == (True, False, True)
        assert opened["trailing"] == (b"", False)

        client.sendall(REQUEST[:10])
        _wait_for(lambda: _state(served)["trailing"] == (REQUEST[:10], False))
        arriving = _state(served)
        assert (arriving["waits"], arriving["answering"], arriving["idle"]) == (True, False, False)

        client.sendall(REQUEST[10:])
        _wait_for(lambda: app.entered)
        answering = _state(served)
        assert (answering["waits"], answering["answering"], answering["idle"]) == (
            False,
            True,
            False,
        )
        assert answering["complete"] is False and answering["hooked"]

        assert app.release is not None
        served.loop.call_soon_threadsafe(app.release.set)
        response = b""
        while not response.endswith(b"0\r\n\r\n"):
            response += client.recv(65536)
        answered = _state(served)
        assert (answered["waits"], answered["answering"], answered["idle"]) == (True, False, True)
        assert answered["complete"] is True
        assert response.startswith(b"HTTP/1.1 200")


def test_the_server_is_pinned_to_h11() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        """Never called."""

    # uvicorn's "auto" would pick httptools when it is installed.
    assert HttpServer(uvicorn.Config(app)).config.http is H11Protocol
    guarded = HttpServer(uvicorn.Config(app, http="h11"), ConnectionGuard(30, 100))
    assert isinstance(guarded.config.http, type)
    assert issubclass(guarded.config.http, GuardedH11Protocol)
    with pytest.raises(ValueError, match="h11"):
        HttpServer(uvicorn.Config(app, http="httptools"))
