"""Listening sockets: what connections accepted from them get."""

from __future__ import annotations

import asyncio
import socket

from evercron.daemon import listeners


def test_accepted_connections_send_small_writes_at_once() -> None:
    # Without TCP_NODELAY a response's body waits for the client's delayed ACK of its
    # headers: 40 ms on every API call.
    async def accept_one() -> int:
        found: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            found.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listening = listeners.bind("127.0.0.1", 0)
        server = await asyncio.start_server(handle, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(*listening.getsockname())
            nodelay = await found
            writer.close()
        return nodelay

    with listeners.bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(accept_one()) != 0
