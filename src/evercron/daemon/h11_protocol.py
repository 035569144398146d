"""uvicorn's HTTP/1.1 protocol on h11, as the daemon serves it, and the one place that
reads a connection's request state.

The daemon serves through uvicorn's `H11Protocol` explicitly, whatever else is installed
(uvicorn's "auto" picks httptools when it is present): the hot-upgrade drain and the
connection limits need to know whether a connection waits for a request, is answering
one, or has bytes of a next one, and uvicorn has no public way to tell. They read it here
from h11's own public state (`Connection.their_state`, `trailing_data`) and from what
uvicorn's `H11Protocol` keeps: its h11 connection `conn`, its request cycle `cycle` with
`response_complete`, and its `on_response_complete` hook. tests/daemon/test_h11_protocol.py
checks that shape, so an upgrade of uvicorn that changes it fails a test rather than
degrading the drain or the limits in silence.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from evercron.daemon.connections import ConnectionGuard

_RECEIVING = (h11.IDLE, h11.SEND_BODY)


def waits_for_request(protocol: H11Protocol) -> bool:
    """No whole request arrived since the connection opened or its last response was
    sent: the client has yet to send one, or the rest of one (head or body)."""
    return protocol.conn.their_state in _RECEIVING


def is_answering(protocol: H11Protocol) -> bool:
    """A request was read and its response is not complete yet."""
    cycle = protocol.cycle
    return cycle is not None and not cycle.response_complete


def is_idle(protocol: H11Protocol) -> bool:
    """Between requests: none being answered and no byte of a next one received."""
    return not is_answering(protocol) and not protocol.conn.trailing_data[0]


class GuardedH11Protocol(H11Protocol):
    """`H11Protocol` that tells its class's `guard` when the connection opens, waits for a
    request, is busy answering one, and is gone; the guard closes it with `close()`. Make
    a class for a guard with `guarded_protocol`."""

    guard: ClassVar[ConnectionGuard]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection: counted by the guard, which may close it (over the limit)."""
        super().connection_made(transport)
        self.guard.opened(self)

    def data_received(self, data: bytes) -> None:
        """Bytes arrived: a request may now be whole."""
        super().data_received(data)
        self._tell_guard()

    def on_response_complete(self) -> None:
        """A response was sent: the connection waits for the next request (unless one
        was already there)."""
        super().on_response_complete()
        self._tell_guard()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone."""
        super().connection_lost(exc)
        self.guard.closed(self)

    def close(self) -> None:
        """Close the connection now (the guard does, when it waits too long or is the
        oldest waiting one past the limit)."""
        self.transport.close()

    def _tell_guard(self) -> None:
        if self.transport.is_closing():
            return  # `connection_lost` follows
        if waits_for_request(self):
            self.guard.waiting(self)
        else:
            self.guard.busy(self)


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A `GuardedH11Protocol` class that reports to `guard`, for `uvicorn.Config(http=)`."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})
