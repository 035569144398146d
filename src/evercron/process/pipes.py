"""Non-blocking pumps for a child's stdin, stdout and stderr on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable
from typing import IO

from evercron.process.capture import Stream
from evercron.process.read_watch import read_watch
from evercron.process.spawn import Child, SpawnedChild

_READ_SIZE = 65536
_READS_PER_WAKEUP = 4


class ChildPipes:
    """Reads stdout and stderr continuously (so the child never blocks on a full pipe),
    handing each chunk to `on_data` in arrival order, and feeds `stdin_data` to stdin.

    `closed` is set once both output pipes reached end of file; `close()` stops everything
    (whatever is still unread is read first, without waiting).
    """

    def __init__(
        self,
        popen: Child,
        stdin_data: bytes,
        on_data: Callable[[Stream, bytes], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._watch = read_watch(self._loop)
        self._on_data = on_data
        self._readers: dict[int, tuple[Stream, IO[bytes]]] = {}
        self._writer: tuple[int, IO[bytes]] | None = None
        self.closed = asyncio.Event()
        for stream, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            assert pipe is not None
            fd = pipe.fileno()
            if not isinstance(popen, SpawnedChild):  # (a spawned child's already are)
                os.set_blocking(fd, False)
            self._readers[fd] = (stream, pipe)  # type: ignore[assignment]
            self._watch.add(fd, functools.partial(self._read, fd))
        if stdin_data:
            assert popen.stdin is not None
            fd = popen.stdin.fileno()
            os.set_blocking(fd, False)
            self._writer = (fd, popen.stdin)
            self._loop.add_writer(fd, self._write, memoryview(stdin_data))

    def _read(self, fd: int) -> None:
        stream = self._readers[fd][0]
        for _ in range(_READS_PER_WAKEUP):
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_reader(fd)
                return
            self._on_data(stream, data)

    def _close_reader(self, fd: int) -> None:
        _, pipe = self._readers.pop(fd)
        self._watch.remove(fd)
        pipe.close()
        if not self._readers:
            self.closed.set()

    def _write(self, remaining: memoryview) -> None:
        assert self._writer is not None
        fd = self._writer[0]
        try:
            remaining = remaining[os.write(fd, remaining) :]
        except BlockingIOError:
            return
        except OSError:  # the command closed its stdin: what it did not read is dropped
            remaining = remaining[:0]
        self._loop.remove_writer(fd)
        if remaining:
            self._loop.add_writer(fd, self._write, remaining)
        else:
            self._close_writer()

    def _close_writer(self) -> None:
        if self._writer is not None:
            fd, pipe = self._writer
            self._writer = None
            self._loop.remove_writer(fd)
            with contextlib.suppress(OSError):
                pipe.close()

    async def wait_closed(self, limit: float) -> None:
        """Wait up to `limit` seconds for end of file on both outputs, then `close()`."""
        if not self.closed.is_set():  # usually already: spare a task and a timer per run
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), limit)
        self.close()

    def close(self) -> None:
        """Read what is buffered, then close every pipe."""
        for fd in list(self._readers):
            self._read(fd)
            if fd in self._readers:
                self._close_reader(fd)
        self._close_writer()
