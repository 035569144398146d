"""A loopback TCP proxy that can black-hole its traffic, to cut one node off a database.

While black-holing, every byte either way is read and dropped, and new connections are
accepted and then left silent: to the client the database simply stops answering, as
behind a dead switch - nothing is refused or closed, so only timeouts can tell. `restore`
closes the silenced connections (as a network partition that heals leaves them broken)
and forwards new ones again. `lose_answers` drops only what the database sends: it still
gets (and commits) every request, but no answer comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class BlackHoleProxy:
    """Forwards 127.0.0.1:`port` to `target` (use as a context manager)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._holes = False
        self._deaf = False  # answers dropped
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    def __enter__(self) -> BlackHoleProxy:
        self._thread.start()
        self._server = self._call(self._listen())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def black_hole(self) -> None:
        """Drop everything from now on."""
        self._holes = True

    def lose_answers(self) -> None:
        """Forward requests but drop every answer from now on."""
        self._deaf = True

    def restore(self) -> None:
        """Close the silenced connections and forward new ones again."""
        self._call(self._heal())

    # -- on the proxy's loop -----------------------------------------------------------

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self._holes:
                await self._drop(reader)
                return
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            await asyncio.gather(
                self._pump(reader, upstream), self._pump(up_reader, writer, answers=True)
            )
        except OSError:
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: bool = False
    ) -> None:
        while data := await reader.read(65536):
            if self._holes or (answers and self._deaf):
                continue  # dropped on the floor
            writer.write(data)
            await writer.drain()
        writer.close()

    async def _drop(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async def _heal(self) -> None:
        self._holes = self._deaf = False
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _close(self) -> None:
        await self._heal()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
