"""Watching thousands of short-lived descriptors for input, at a fraction of asyncio's cost.

Every run has three descriptors to watch (its pidfd and two output pipes), each for a
moment. `loop.add_reader` and `remove_reader` go through the selector's bookkeeping (a
key, a handle, transport checks), a sizeable share of the event loop's time at a
thousand runs a second (docs/BENCHMARKS.md). A `ReadWatch` keeps them in an epoll set of
its own, which the loop watches as one descriptor: registering is one system call, and a
ready descriptor's callback is called directly.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from collections.abc import Callable

_EVENTS_PER_WAKEUP = 256  # the rest stay ready: the loop comes back for them next turn


class ReadWatch:
    """Calls a descriptor's callback (on the loop) each time it is readable or has hung
    up, until it is removed. Level-triggered, like `loop.add_reader`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._poll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._poll.fileno(), self._dispatch)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        """Watch `fd` (which must stay open until `remove`)."""
        self._poll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        """Stop watching `fd` (before it is closed); its callback is not called again."""
        if self._callbacks.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def close(self) -> None:
        """Stop watching everything and release the epoll set."""
        self._callbacks.clear()
        if not self._loop.is_closed():
            self._loop.remove_reader(self._poll.fileno())
        self._poll.close()

    def _dispatch(self) -> None:
        for fd, _ in self._poll.poll(0, _EVENTS_PER_WAKEUP):
            callback = self._callbacks.get(fd)  # (removed by an earlier callback: skip)
            if callback is None:
                continue
            try:
                callback()
            except Exception as error:
                self._loop.call_exception_handler(
                    {"message": "error in a descriptor's callback", "exception": error}
                )


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadWatch]
_watches = weakref.WeakKeyDictionary()


def read_watch(loop: asyncio.AbstractEventLoop) -> ReadWatch:
    """The `ReadWatch` of `loop` (made on first use). Those of loops closed since are
    released on the way."""
    found = _watches.get(loop)
    if found is None:
        for other, watch in list(_watches.items()):
            if other.is_closed():
                watch.close()
                del _watches[other]
        found = _watches[loop] = ReadWatch(loop)
    return found
