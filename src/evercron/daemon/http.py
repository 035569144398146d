"""The HTTP server under the API: uvicorn, with the daemon owning the signals, and a
drain for hot upgrades (`http.Server.Shutdown` done so that no client sees a failure).

Draining (the successor already accepts on the same inherited socket): stop accepting,
answer every request with `Connection: close` (the app's `draining` flag), close
connections busy with a response once it is sent, keep idle keep-alive connections open
for `idle_grace` so an active client sends its next request here and is told to
reconnect, then close them; anything still open after `timeout` is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Generator
from typing import Any

import uvicorn

log = logging.getLogger("evercron.daemon")
DRAIN_IDLE_GRACE = 2.0
DRAIN_TIMEOUT = 30.0
_TICK = 0.05


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling, with a graceful drain."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.draining = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """The daemon handles signals itself."""
        yield

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
            return
        await self._drain_connections(DRAIN_IDLE_GRACE, DRAIN_TIMEOUT)

    async def _drain_connections(self, idle_grace: float, timeout: float) -> None:
        began = time.monotonic()
        while self.server_state.connections:
            elapsed = time.monotonic() - began
            for connection in list(self.server_state.connections):
                if elapsed >= timeout:
                    _cut(connection)
                elif not _is_idle(connection):
                    connection.shutdown()  # closes once the response is sent
                elif elapsed >= idle_grace:
                    connection.shutdown()  # idle: closes now
            if elapsed >= timeout:
                log.warning("drain: connections still open after %gs were cut", timeout)
                break
            await asyncio.sleep(_TICK)
        for task in list(self.server_state.tasks):
            task.cancel()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


def _is_idle(connection: Any) -> bool:
    """Between requests (no request being read or answered)."""
    cycle = getattr(connection, "cycle", None)
    if cycle is not None and not cycle.response_complete:
        return False
    parser = getattr(connection, "conn", None)  # h11: bytes of a next request arrived?
    return not (parser is not None and getattr(parser, "trailing_data", (b"", False))[0])


def _cut(connection: Any) -> None:
    transport = getattr(connection, "transport", None)
    if transport is not None:
        transport.close()
