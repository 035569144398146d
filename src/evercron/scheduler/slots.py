"""A bound on how many firings have a live process at once."""

from __future__ import annotations

import asyncio
import resource
from collections import deque

_FDS_PER_PROCESS = 8
# The daemon's own (store, sockets) and its HTTP connections, which get what the live
# processes leave (daemon.connections.connection_limit: 1000 by default).
_RESERVED_FDS = 1536
_MIN_LIVE = 64
_MAX_LIVE = 16384


def live_process_limit() -> int:
    """How many firings may have a process at once: each holds a few descriptors (pipes,
    a pidfd) and more while it is being spawned, so stay well inside RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_LIVE
    return max(_MIN_LIVE, min(_MAX_LIVE, (soft - _RESERVED_FDS) // _FDS_PER_PROCESS))


def reserved_descriptors() -> int:
    """Descriptors kept for the runs that may be live at once (`live_process_limit`
    of them): what HTTP connections must leave free."""
    return live_process_limit() * _FDS_PER_PROCESS


class Slots:
    """Slots taken first come first served; waiting ones are refused once closed (the
    daemon is stopping)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._closed = False

    async def acquire(self) -> bool:
        """Take a slot, waiting for one; False once closed."""
        if self._closed:
            return False
        if self._used < self.limit and not self._waiting:
            self._used += 1
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # it was handed a slot just as it was cancelled
            raise

    def release(self) -> None:
        """Give a slot back (to the first waiter, if any)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes on; `_used` stays
                return
        self._used -= 1

    def close(self) -> None:
        """Refuse every waiter and every later request."""
        self._closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(False)
