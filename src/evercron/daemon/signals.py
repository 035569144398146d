"""Signals for the daemon's event loop that are never lost under load.

asyncio's `add_signal_handler` learns of a signal from a byte written to the loop's
self-pipe, which it shares with every `call_soon_threadsafe`. A busy daemon (a thousand
spawns finishing per second on worker threads) can fill that pipe, and the byte of a
SIGTERM is then dropped - the daemon never stops. Here the Python-level handler queues
the callback itself (`call_soon_threadsafe` queues it even when the wake-up byte cannot
be written), and a wake-up fd of its own makes sure the loop wakes whichever thread the
kernel delivered the signal to.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable
from types import FrameType


class SignalRouter:
    """Routes signals to callbacks on one event loop (install from the main thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        loop.add_reader(self._reader.fileno(), self._drain)
        self._previous: dict[int, object] = {}

    def route(self, signum: int, callback: Callable[[int], None]) -> None:
        """Call `callback(signum)` on the loop whenever `signum` arrives."""

        def handler(number: int, _frame: FrameType | None) -> None:
            self._loop.call_soon_threadsafe(callback, number)

        self._previous[signum] = signal.signal(signum, handler)

    def close(self) -> None:
        """Restore the previous handlers and wake-up fd."""
        for signum, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(self._previous_fd)
        self._loop.remove_reader(self._reader.fileno())
        self._reader.close()
        self._writer.close()

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._reader.recv(4096):
                pass
