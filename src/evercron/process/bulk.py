"""Starting many commands at once without stalling the event loop - or paying for it.

Creating a process blocks the calling thread until the child has exec'd (vfork), which
on a loaded machine takes longer than the creation's own CPU. Bulk starts (a scheduler's
firings) are therefore made on a few worker threads. A hand-off per start - a future, a
queue wake-up, a loop wake-up and two GIL transfers - costs about as much as the start
itself, so workers take the waiting starts in batches and hand the results back to the
loop a batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_WORKERS = 3  # starts in flight at once: enough to keep two cores busy while one waits
_BATCH = 8  # starts per hand-back: the first ones are not kept waiting for the rest

_IDLE_EXIT = 30.0  # seconds a worker waits for more starts before it ends

_Request = tuple[
    asyncio.AbstractEventLoop,
    Callable[[], Any],
    "asyncio.Future[Any]",
    threading.Event,
    Callable[[Any | None], None] | None,
    Callable[[Any], None] | None,
]
_Outcome = tuple[
    "asyncio.Future[Any]", Any, BaseException | None, Callable[[Any | None], None] | None
]


class BulkStarter:
    """Runs start functions on worker threads; `start` returns a future on the caller's
    loop for each. Starts run in the order they were asked for."""

    def __init__(self, workers: int = _WORKERS) -> None:
        self._workers = workers
        self._ready = threading.Condition(threading.Lock())
        self._waiting: list[_Request] = []
        self._threads = 0
        self._idle = 0

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        function: Callable[[], T],
        abandoned: Callable[[T | None], None] | None = None,
        orphaned: Callable[[T], None] | None = None,
    ) -> asyncio.Future[T]:
        """Call `function` on a worker thread; its result (or exception) comes back in
        the returned future, resolved on `loop`. If that future was cancelled by then,
        `abandoned` is called instead (on the loop) with the result to undo, or None
        when the function failed or was never called (cancelled while it waited, it is
        skipped). A result that cannot reach its loop at all (closed meanwhile) goes to
        `orphaned`, on the worker thread: nothing else will ever undo it."""
        future: asyncio.Future[T] = loop.create_future()
        # Workers never touch the future (asyncio objects belong to their loop): they
        # learn of a cancellation through this event, set on the loop.
        cancelled = threading.Event()
        future.add_done_callback(lambda done: cancelled.set() if done.cancelled() else None)
        with self._ready:
            self._waiting.append((loop, function, future, cancelled, abandoned, orphaned))
            if self._idle:
                self._ready.notify()
            elif self._threads < self._workers:
                self._threads += 1
                threading.Thread(target=self._work, name="evercron-start", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._waiting:
                    self._idle += 1
                    woken = self._ready.wait(_IDLE_EXIT)
                    self._idle -= 1
                    if not woken and not self._waiting:
                        self._threads -= 1
                        return
                batch, self._waiting = self._waiting[:_BATCH], self._waiting[_BATCH:]
            by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
            orphans: dict[asyncio.AbstractEventLoop, list[tuple[Any, Callable[[Any], None]]]]
            orphans = {}
            for loop, function, future, cancelled, abandoned, orphaned in batch:
                outcome: _Outcome
                if cancelled.is_set() or loop.is_closed():  # nobody waits: start nothing
                    outcome = (future, None, None, abandoned)
                else:
                    try:
                        result = function()
                        outcome = (future, result, None, abandoned)
                        if orphaned is not None:
                            orphans.setdefault(loop, []).append((result, orphaned))
                    except BaseException as error:  # handed to the awaiting task
                        outcome = (future, None, error, abandoned)
                by_loop.setdefault(loop, []).append(outcome)
            for loop, outcomes in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_deliver, outcomes)
                except RuntimeError:  # the loop closed: undo what was made for it
                    for result, orphaned in orphans.get(loop, []):
                        with contextlib.suppress(Exception):
                            orphaned(result)


def _deliver(outcomes: list[_Outcome]) -> None:
    for future, result, error, abandoned in outcomes:
        if future.cancelled():
            if abandoned is not None:
                abandoned(result if error is None else None)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
