"""Held commands released together: one pipe for a whole group, one write to release it.

A held command's `/bin/sh` waits for one line on its stdin before it runs anything (see
`spawn.py`). Releasing a thousand commands one pipe at a time costs a thousand writes, and
each write wakes a process that may take the CPU from the releasing thread: the last ones
start a good part of a second late. A group gives all its members the same pipe as stdin;
`release()` writes one newline per member in a single call, and each member's shell reads
exactly one (the shell reads its line byte by byte), so they all start at once.

Those reads take the pipe's lock one member at a time, so closing the pipe right after
the release waits for most of them: 120-160 ms for 300 members, measured on the event
loop's thread. The group's descriptors are therefore closed on a helper thread.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable

_closing: queue.SimpleQueue[int] | None = None
_closing_lock = threading.Lock()


def _close_in_background(descriptors: list[int]) -> None:
    """Close `descriptors` soon, on a helper thread (never blocks the caller)."""
    global _closing
    with _closing_lock:
        if _closing is None:
            _closing = queue.SimpleQueue()
            threading.Thread(
                target=_close_forever, args=(_closing,), name="evercron-close", daemon=True
            ).start()
    for descriptor in descriptors:
        _closing.put(descriptor)


def _close_forever(descriptors: queue.SimpleQueue[int]) -> None:
    while True:
        with contextlib.suppress(OSError):
            os.close(descriptors.get())


class HeldGroup:
    """Commands prepared to start together: pass the group as `start(..., held=group)`,
    then `release()` it once. A member that joins after the release (its spawn took
    longer) is released as soon as it is started. Members of a group are released only
    with it. `close()` gives the group up instead: its members exit without running
    anything (as they do if this process ends first)."""

    def __init__(self) -> None:
        reader, writer = os.pipe()
        self._reader: int | None = reader
        self._writer: int | None = writer
        self._members: list[Callable[[], None]] = []
        self._starting = 0
        self._released = False

    def starting(self) -> int:
        """A member is being started: the descriptor its process gets as stdin, kept open
        until `joined` or `abandoned`."""
        if self._reader is None:
            raise RuntimeError("this held group is over: released or given up")
        self._starting += 1
        return self._reader

    def joined(self, on_release: Callable[[], None]) -> None:
        """A member was started; `on_release` is called when it is released (at once if
        the group already was)."""
        self._starting -= 1
        if self._released:
            self._write(1)
            on_release()
        elif self._writer is not None:
            self._members.append(on_release)
        self._close_when_done()

    def abandoned(self) -> None:
        """A member could not be started."""
        self._starting -= 1
        self._close_when_done()

    def release(self) -> None:
        """Let every member run now (no effect the second time, or after `close()`)."""
        if self._released or self._writer is None:
            return
        self._released = True
        members, self._members = self._members, []
        self._write(len(members))
        for on_release in members:
            on_release()
        self._close_when_done()

    def close(self) -> None:
        """Give the group up unreleased: its members see end of file and exit without
        running anything (no effect once released)."""
        if self._released or self._writer is None:
            return
        _close_in_background([self._writer])
        self._writer = None
        self._members = []
        self._close_when_done()

    def _write(self, count: int) -> None:
        # A member killed while held leaves its newline unread: harmless, the pipe goes
        # when the last member let go of it. At most 16,384 members fit a pipe's buffer.
        if self._writer is not None:
            with contextlib.suppress(OSError):  # every member already gone
                os.write(self._writer, b"\n" * count)

    def _close_when_done(self) -> None:
        over = self._released or self._writer is None
        if over and not self._starting:
            _close_in_background([d for d in (self._writer, self._reader) if d is not None])
            self._writer = self._reader = None

    def __del__(self) -> None:
        for descriptor in (self._writer, self._reader):
            if descriptor is not None:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
