"""Held commands released together: one pipe for a whole group, one write to release it.

A held command's `/bin/sh` waits for one line on its stdin before it runs anything (see
`spawn.py`). Releasing a thousand commands one pipe at a time costs a thousand writes, and
each write wakes a process that may take the CPU from the releasing thread: the last ones
start a good part of a second late. A group gives all its members the same pipe as stdin;
`release()` writes one newline per member in a single call, and each member's shell reads
exactly one (the shell reads its line byte by byte), so they all start at once.

Those reads take the pipe's lock one member at a time, so closing the pipe right after
the release waits for most of them (a noticeable stall of the event loop with hundreds of
members). The group's descriptors are therefore closed on a helper thread.

The release is two steps so that its instant does not depend on the event loop: `fire()`
(any thread, e.g. a clock's instants thread) makes the write, and `release()` (on the
loop) tells the members when they were let run.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
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
    then `release()` it once (or `fire()` it from any thread at the instant, then
    `release()` on the loop). A member that joins after the release (its spawn took
    longer) is released as soon as it is started. Members of a group are released only
    with it. `close()` gives the group up instead: its members exit without running
    anything (as they do if this process ends first)."""

    def __init__(self) -> None:
        reader, writer = os.pipe()
        self._reader: int | None = reader
        self._writer: int | None = writer
        self._members: list[Callable[[float], None]] = []
        self._starting = 0
        self._fired_at: float | None = None
        self._lock = threading.Lock()  # between `fire()` on another thread and the loop

    def starting(self) -> int:
        """A member is being started: the descriptor its process gets as stdin, kept open
        until `joined` or `abandoned`."""
        if self._reader is None:
            raise RuntimeError("this held group is over: released or given up")
        self._starting += 1
        return self._reader

    def joined(self, on_release: Callable[[float], None]) -> None:
        """A member was started; `on_release` is called with the time it was let run
        (POSIX) when it is released (at once if the group already was)."""
        with self._lock:
            self._starting -= 1
            fired_at = self._fired_at
            if fired_at is not None:
                self._write(1)
            elif self._writer is not None:
                self._members.append(on_release)
        if fired_at is not None:
            on_release(time.time())
        self._close_when_done()

    def abandoned(self) -> None:
        """A member could not be started."""
        with self._lock:
            self._starting -= 1
        self._close_when_done()

    @property
    def fired_at(self) -> float | None:
        """When `fire()` let the members run (POSIX time), or None before that."""
        with self._lock:
            return self._fired_at

    def fire(self) -> None:
        """Let every member started so far run now: one write, safe on any thread (no
        effect the second time, or after `close()`). Call `release()` on the loop after."""
        with self._lock:
            if self._fired_at is not None or self._writer is None:
                return
            self._fired_at = time.time()
            self._write(len(self._members))

    def release(self) -> None:
        """`fire()` if that was not done, then tell the members when they were let run."""
        self.fire()
        with self._lock:
            members, self._members = self._members, []
            fired_at = self._fired_at
        if fired_at is not None:
            for on_release in members:
                on_release(fired_at)
        self._close_when_done()

    def close(self) -> None:
        """Give the group up unreleased: its members see end of file and exit without
        running anything (no effect once released)."""
        with self._lock:
            if self._fired_at is not None or self._writer is None:
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
        with self._lock:
            over = self._fired_at is not None or self._writer is None
            if not over or self._starting:
                return
            descriptors = [d for d in (self._writer, self._reader) if d is not None]
            self._writer = self._reader = None
        _close_in_background(descriptors)

    def __del__(self) -> None:
        for descriptor in (self._writer, self._reader):
            if descriptor is not None:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
