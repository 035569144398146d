"""Bounds on the HTTP connections that clients, trusted or not, can hold open.

A client has `header_timeout` seconds to send a whole request, counted from when its
connection opens or its previous response completes; bytes trickling in do not extend it
(slowloris). At most `limit` connections are open: one past the limit closes the
connection that has waited for a request the longest - so sockets held idle cannot lock
out a client that is about to send one - and the new one is closed instead only when
every other connection is busy answering a request.

The limit is kept below what the descriptor limit (RLIMIT_NOFILE) leaves once the
scheduler's share and the daemon's own are set aside (`connection_limit`), so firings
never fail for want of a descriptor because of HTTP clients. Should accept() run out of
descriptors anyway, asyncio logs nothing more per failed call (this module handles the
error) and retries a second later; the oldest waiting connections are closed meanwhile.
What was closed is logged at once, then at most once per `REPORT_INTERVAL`, with counts.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections import Counter, OrderedDict
from typing import Any, Protocol

log = logging.getLogger("evercron.daemon")

REPORT_INTERVAL = 10.0
"""At most one log line about closed connections per this many seconds."""
ACCEPT_BACKLOG = 64
"""uvicorn's `backlog`: how many connections asyncio accepts in one loop step, before any
of them is counted here (the kernel's own queue is `http.LISTEN_QUEUE`)."""
DAEMON_FDS = 64
"""Descriptors the daemon holds besides its jobs' and its connections': the store, the
log, listening sockets, lock files, the event loop (16 when idle)."""
MIN_CONNECTIONS = 16
"""The limit is never lowered below this, however low the descriptor limit."""
# Accepted sockets not yet counted: a batch is counted (and may be closed) two loop steps
# after its accept and its descriptor freed one step later, so up to four batches.
_UNCOUNTED_FDS = 4 * ACCEPT_BACKLOG
_ACCEPT_RETRY = 1.0  # asyncio retries accept() this long after running out of descriptors
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def connection_limit(max_connections: int, reserved_fds: int, soft: int | None = None) -> int:
    """`max_connections`, lowered so that the connections fit in the soft descriptor
    limit `soft` (this process's by default) next to the `reserved_fds` the scheduler
    keeps, the daemon's own and the sockets being accepted; at least `MIN_CONNECTIONS`."""
    if soft is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    room = soft - reserved_fds - DAEMON_FDS - _UNCOUNTED_FDS
    return max(MIN_CONNECTIONS, min(max_connections, room))


class Connection(Protocol):
    """What the guard needs of a connection."""

    def close(self) -> None:
        """Close it now."""


class ClosedConnections:
    """Counts connections closed or refused by the guard and logs them: the first at
    once, then one line per `interval` at most, with the counts since the line before."""

    def __init__(self, header_timeout: float, limit: int, interval: float) -> None:
        self.interval = interval
        self.totals: Counter[str] = Counter()
        """Each kind of closing (`timed_out`, `idle`, `refused`, `accept_failed`,
        `freed`) since start."""
        self._wording = {
            "timed_out": f"closed %d that sent no whole request within {header_timeout:g}s",
            "idle": f"closed %d idle the longest (more than {limit} open)",
            "refused": f"refused %d new ones (more than {limit} open, all busy)",
            "freed": "closed %d idle ones to free descriptors",
            "accept_failed": "accept() found no free descriptor %d times",
        }
        self._counts: Counter[str] = Counter()
        self._logged_at: float | None = None
        self._pending: asyncio.TimerHandle | None = None

    def add(self, kind: str, count: int = 1) -> None:
        """`count` connections were closed (or accept() failed) for reason `kind`."""
        self.totals[kind] += count
        self._counts[kind] += count
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= self.interval:
            self._log()
        elif self._pending is None:  # the counts of a burst that then stops are told too
            delay = self._logged_at + self.interval - now
            self._pending = asyncio.get_running_loop().call_later(delay, self._log)

    def flush(self) -> None:
        """Log the counts not told yet, if any (the server is stopping)."""
        if self._counts:
            self._log()

    def _log(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        now = time.monotonic()
        told = [
            text % self._counts[kind] for kind, text in self._wording.items() if self._counts[kind]
        ]
        since = "" if self._logged_at is None else f" in the last {now - self._logged_at:.0f}s"
        log.warning("HTTP connections%s: %s", since, ", ".join(told))
        self._counts.clear()
        self._logged_at = now


class ConnectionGuard:
    """Keeps the open connections within `limit` and closes those that send no whole
    request within `header_timeout` (see the module text). The protocol reports each
    connection's state; everything runs on the event loop's thread."""

    def __init__(
        self, header_timeout: float, limit: int, report_interval: float = REPORT_INTERVAL
    ) -> None:
        self.header_timeout = header_timeout
        self.limit = limit
        self.closed_connections = ClosedConnections(header_timeout, limit, report_interval)
        self._open: set[Connection] = set()
        # Connections waiting for a request, with since when (monotonic), oldest first:
        # the next to time out and the first to close past the limit.
        self._waiting: OrderedDict[Connection, float] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._freed_at: float | None = None

    @classmethod
    def within_descriptors(
        cls, header_timeout: float, max_connections: int, reserved_fds: int
    ) -> ConnectionGuard:
        """A guard whose limit is `max_connections` lowered to what the descriptor limit
        leaves beside the scheduler's `reserved_fds` (see `connection_limit`)."""
        limit = connection_limit(max_connections, reserved_fds)
        if limit < max_connections:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.warning(
                "max_connections %d lowered to %d: the descriptor limit is %d and jobs "
                "keep %d (raise it with `ulimit -n` or LimitNOFILE=)",
                max_connections,
                limit,
                soft,
                reserved_fds,
            )
        return cls(header_timeout, limit)

    @property
    def open_count(self) -> int:
        """Connections open now (closed ones stop counting at once)."""
        return len(self._open)

    def opened(self, connection: Connection) -> None:
        """A new connection, waiting for its first request; past the limit the one
        waiting the longest is closed (the new one if every other is busy)."""
        self._open.add(connection)
        self.waiting(connection)
        while len(self._open) > self.limit:
            oldest = next(iter(self._waiting))  # the new one waits, at least
            self._close(oldest)
            if oldest is connection:
                self.closed_connections.add("refused")
                break
            self.closed_connections.add("idle")

    def waiting(self, connection: Connection) -> None:
        """`connection` waits for a (whole) request from now on; already waiting, it
        keeps its older start."""
        if connection in self._open and connection not in self._waiting:
            self._waiting[connection] = time.monotonic()
            self._arm()

    def busy(self, connection: Connection) -> None:
        """A whole request arrived on `connection`: it is answering it."""
        self._waiting.pop(connection, None)

    def closed(self, connection: Connection) -> None:
        """`connection` is gone."""
        self._open.discard(connection)
        self._waiting.pop(connection, None)

    def out_of_descriptors(self) -> None:
        """accept() failed for want of descriptors: close the oldest waiting connections
        to make room before asyncio retries (once per retry, however many calls failed)."""
        self.closed_connections.add("accept_failed")
        now = time.monotonic()
        if self._freed_at is not None and now - self._freed_at < _ACCEPT_RETRY:
            return
        self._freed_at = now
        freed = 0
        while self._waiting and freed < _UNCOUNTED_FDS:
            self._close(next(iter(self._waiting)))
            freed += 1
        if freed:
            self.closed_connections.add("freed", freed)

    def watch_accept(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle accept() running out of descriptors on `loop` (`out_of_descriptors`)
        instead of asyncio's error log, which writes a traceback per failed call; every
        other error goes to the handler there was."""
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            error = context.get("exception")
            if (
                "socket" in context
                and isinstance(error, OSError)
                and error.errno in _OUT_OF_DESCRIPTORS
            ):
                self.out_of_descriptors()
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)

    def _close(self, connection: Connection) -> None:
        self.closed(connection)
        connection.close()

    def _arm(self) -> None:
        """Wake up when the connection waiting the longest reaches its deadline."""
        if self._timer is not None or not self._waiting:
            return
        since = next(iter(self._waiting.values()))
        delay = max(0.0, since + self.header_timeout - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        deadline = time.monotonic() - self.header_timeout
        timed_out = 0
        while self._waiting:
            connection, since = next(iter(self._waiting.items()))
            if since > deadline:
                break
            self._close(connection)
            timed_out += 1
        if timed_out:
            self.closed_connections.add("timed_out", timed_out)
        self._arm()
