"""An `HttpServer` serving an ASGI app in a thread of its own, on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from evercron.daemon.connections import ConnectionGuard
from evercron.daemon.http import HttpServer

T = TypeVar("T")


@dataclass
class Served:
    """A serving server, its address and its loop."""

    server: HttpServer
    address: tuple[str, int]
    loop: asyncio.AbstractEventLoop

    def on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the server's loop (where its state may be read)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)


@contextlib.contextmanager
def serving(app: Any, guard: ConnectionGuard | None, **config: Any) -> Iterator[Served]:
    """Serve `app` (with `guard`, and uvicorn `config` settings) until the block ends,
    then stop the server, which must end."""
    listening = socket.create_server(("127.0.0.1", 0))
    server = HttpServer(uvicorn.Config(app, log_level="warning", **config), guard)
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve(sockets=[listening])

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield Served(server, listening.getsockname(), loops[0])
    finally:
        server.force_exit = server.should_exit = True
        thread.join(timeout=30)
        listening.close()
    assert not thread.is_alive()
