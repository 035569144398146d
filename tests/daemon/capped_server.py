"""`python capped_server.py NOFILE`: an `HttpServer` with a `ConnectionGuard` whose limit
is far above what the descriptor limit NOFILE lets it hold, so accept() runs out of
descriptors. Prints its port, then serves until killed; logs warnings to stderr."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import sys
from typing import Any

import uvicorn

from evercron.daemon.connections import ConnectionGuard
from evercron.daemon.http import HttpServer


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answered"})


def main() -> None:
    """Serve under the descriptor limit given."""
    nofile = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    listening = socket.create_server(("127.0.0.1", 0))
    print(listening.getsockname()[1], flush=True)
    guard = ConnectionGuard(header_timeout=60, limit=100_000, report_interval=1)
    server = HttpServer(uvicorn.Config(app, log_level="warning", backlog=64), guard)
    asyncio.run(server.serve(sockets=[listening]))


if __name__ == "__main__":
    main()
