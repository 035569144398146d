"""Live output of running runs, for followers (server-sent events)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveEvent:
    """A chunk of output (`kind` stdout/stderr, at byte `offset`) or the end of the run
    (`kind` "end", `data` the final status)."""

    kind: str
    offset: int
    data: bytes


class LiveOutput:
    """Fan-out of each running run's output to any number of followers.

    A follower gets every event published after it subscribed; what came before it reads
    from the store. Queues are bounded: a follower that falls far behind is dropped (its
    stream ends and the client resumes from the store with Last-Event-ID).
    """

    def __init__(self, queue_size: int = 1024, backlog_bytes: int = 256 * 1024) -> None:
        self._queue_size = queue_size
        self._backlog_bytes = backlog_bytes
        self._followers: dict[int, set[asyncio.Queue[LiveEvent | None]]] = {}
        self._backlogs: dict[int, deque[LiveEvent]] = {}
        self._backlog_size: dict[int, int] = {}

    def begin(self, run_id: int) -> None:
        """Mark a run as live (followers may subscribe)."""
        self._backlogs[run_id] = deque()
        self._backlog_size[run_id] = 0

    def is_live(self, run_id: int) -> bool:
        """Whether this process is producing the run's output right now."""
        return run_id in self._backlogs

    def subscribe(self, run_id: int) -> tuple[list[LiveEvent], asyncio.Queue[LiveEvent | None]]:
        """The run's most recent events (which may not be in the store yet) and a queue of
        its next ones; None in the queue means the stream is over."""
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(self._queue_size)
        self._followers.setdefault(run_id, set()).add(queue)
        return list(self._backlogs.get(run_id, ())), queue

    def unsubscribe(self, run_id: int, queue: asyncio.Queue[LiveEvent | None]) -> None:
        """Stop delivering to `queue`."""
        self._followers.get(run_id, set()).discard(queue)

    def publish(self, run_id: int, event: LiveEvent) -> None:
        """Deliver an event to the run's followers (and keep it in the recent backlog)."""
        backlog = self._backlogs.get(run_id)
        if backlog is not None and event.kind != "end":
            backlog.append(event)
            self._backlog_size[run_id] += len(event.data)
            while self._backlog_size[run_id] > self._backlog_bytes and len(backlog) > 1:
                self._backlog_size[run_id] -= len(backlog.popleft().data)
        for queue in list(self._followers.get(run_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._followers[run_id].discard(queue)
                _close(queue)

    def end(self, run_id: int, status: str, offset: int) -> None:
        """Publish the end of a run and close its followers' streams."""
        self.publish(run_id, LiveEvent("end", offset, status.encode()))
        for queue in self._followers.pop(run_id, set()):
            _close(queue)
        self._backlogs.pop(run_id, None)
        self._backlog_size.pop(run_id, None)

    def close_all(self) -> None:
        """End every follower's stream (the daemon is going away; clients reconnect)."""
        for queues in self._followers.values():
            for queue in queues:
                _close(queue)
        self._followers.clear()


def _close(queue: asyncio.Queue[LiveEvent | None]) -> None:
    while True:
        try:
            queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
