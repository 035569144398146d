"""The HTTP server under the API: uvicorn, with the daemon owning the signals, and a
drain for hot upgrades (`http.Server.Shutdown` done so that no client sees a failure).

Draining (the successor already accepts on the same inherited socket): stop accepting,
answer every request with `Connection: close` (the app's `draining` flag), close
connections busy with a request once it is answered, keep idle keep-alive connections
open for `idle_grace` so an active client sends its next request here and is told to
reconnect, then close them; anything still open after `timeout` is cut.

A connection accepted just before the drain began is waited for too: its protocol is
made a few loop steps after the accept, and a drain that missed it would end the process
under a request already sent (the client sees a reset). A request still arriving (no
response under way yet) is read and answered, never cut off by the close.

HTTP/1.1 is served by uvicorn's h11 protocol whatever else is installed: the drain reads
each connection's request state from it (`evercron.daemon.h11_protocol`). With a
`ConnectionGuard`, idle and slow connections are bounded too (`evercron.daemon.connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Generator

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from evercron.daemon.connections import ConnectionGuard
from evercron.daemon.h11_protocol import guarded_protocol, is_answering, is_idle

log = logging.getLogger("evercron.daemon")
DRAIN_IDLE_GRACE = 2.0
DRAIN_TIMEOUT = 30.0
_TICK = 0.05
LISTEN_QUEUE = 4096
"""Connections the kernel queues until they are accepted (they cost no descriptor here
until then), whatever uvicorn's `backlog`, which also bounds how many asyncio accepts in
one loop step."""
# Loop steps from an accept to the protocol's connection_made (accept task, transport).
_ACCEPT_STEPS = 3


class HttpServer(uvicorn.Server):
    """uvicorn on h11 without its own signal handling, with a graceful drain, and with
    the connections kept within `guard`'s bounds when one is given. The config's `http`
    must be "auto", "h11" or an `H11Protocol` subclass (and "auto" or "h11" with a
    guard): it is set to the h11 protocol class served."""

    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard | None = None) -> None:
        config.http = _h11_protocol(config.http, guard)
        super().__init__(config)
        self.guard = guard
        self.draining = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """The daemon handles signals itself."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving `sockets` (with a queue of `LISTEN_QUEUE`); accept() running out
        of descriptors is the guard's to handle."""
        if self.guard is not None:
            self.guard.watch_accept(asyncio.get_running_loop())
        await super().startup(sockets)
        for sock in sockets or ():
            sock.listen(LISTEN_QUEUE)

    async def wait_serving(self, serving: asyncio.Task[None]) -> None:
        """Return once the server accepts connections; raise if it failed to start."""
        while not self.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    def drain(self) -> None:
        """Hand the connections over gracefully (see the module text); `serve()` returns
        once every connection is closed."""
        self.draining = True
        for server in self.servers:
            server.close()  # the listening socket lives on in the successor
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop: drain when handing over, else uvicorn's graceful shutdown."""
        if not self.draining:
            await super().shutdown(sockets)
        else:
            await self._drain_connections(DRAIN_IDLE_GRACE, DRAIN_TIMEOUT)
        if self.guard is not None:
            self.guard.closed_connections.flush()

    async def _drain_connections(self, idle_grace: float, timeout: float) -> None:
        began = time.monotonic()
        for _ in range(_ACCEPT_STEPS):  # connections accepted before close() get made
            await asyncio.sleep(0)
        while self.server_state.connections:
            elapsed = time.monotonic() - began
            for connection in list(self.server_state.connections):
                if elapsed >= timeout:
                    connection.transport.close()
                elif not isinstance(connection, H11Protocol):
                    connection.shutdown()  # not served here: uvicorn's own shutdown
                elif is_idle(connection):
                    if elapsed >= idle_grace:
                        connection.shutdown()  # idle: closes now
                elif is_answering(connection):
                    connection.shutdown()  # closes once the response is sent
            if elapsed >= timeout:
                log.warning("drain: connections still open after %gs were cut", timeout)
                break
            await asyncio.sleep(_TICK)
        for task in list(self.server_state.tasks):
            task.cancel()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


def _h11_protocol(
    http: type[asyncio.Protocol] | str, guard: ConnectionGuard | None
) -> type[H11Protocol]:
    """The h11 protocol class to serve with, for uvicorn's `http` setting `http`."""
    if http in ("auto", "h11"):
        return H11Protocol if guard is None else guarded_protocol(guard)
    if isinstance(http, type) and issubclass(http, H11Protocol) and guard is None:
        return http
    raise ValueError(f"HttpServer serves uvicorn's h11 protocol: http={http!r} cannot be used")
