"""Live output of running runs, for followers (server-sent events)."""

from __future__ import annotations

import asyncio
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

    def __init__(self, queue_size: int = 1024) -> None:
        self._queue_size = queue_size
        self._followers: dict[int, set[asyncio.Queue[LiveEvent | None]]] = {}
        self._live: set[int] = set()

    def begin(self, run_id: int) -> None:
        """Mark a run as live (followers may subscribe)."""
        self._live.add(run_id)

    def is_live(self, run_id: int) -> bool:
        """Whether this process is producing the run's output right now."""
        return run_id in self._live

    def subscribe(self, run_id: int) -> asyncio.Queue[LiveEvent | None]:
        """A queue of the run's next events; None means the stream is over."""
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(self._queue_size)
        self._followers.setdefault(run_id, set()).add(queue)
        return queue

    def unsubscribe(self, run_id: int, queue: asyncio.Queue[LiveEvent | None]) -> None:
        """Stop delivering to `queue`."""
        self._followers.get(run_id, set()).discard(queue)

    def publish(self, run_id: int, event: LiveEvent) -> None:
        """Deliver an event to the run's followers."""
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
        self._live.discard(run_id)

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
