"""The SQLite store's one thread: every call to the database, with group commits.

SQLite blocks on disk, so calls never run on the event loop. Writes queued while the
thread is busy run together in one transaction: a thousand claims due in the same second
cost one commit, not a thousand. Each call's result is delivered only after its group has
committed, so a claim is durable before anything is spawned for it. Reads run outside the
write transaction, so a lock held by another process delays writes, not reads.

Calls made for every run (its start, its result) are also gathered on the event loop's
side (`CallBatch`): those made within `BATCH_DELAY` travel as one queued call, so a
thousand runs a second wake the thread and take the GIL a few hundred times a second,
not once per run.

Failure rules: a call that raises fails alone (its own changes undone); a passing failure
(`StoreUnavailable`: disk full, lock held past the busy timeout) fails every write of the
group with it and commits nothing, since SQLite may already have rolled the transaction
back; the callers retry (`evercron.store.retry`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from evercron.store.records import StoreUnavailable
from evercron.store.sqlite_database import SqliteDatabase, translated_errors

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item of a batch
_MAX_GROUP = 2000
BATCH_DELAY = 0.005
"""Seconds a `CallBatch` gathers calls before sending them: a start or a result is
recorded that much later (nothing waits on it but its caller), and at a thousand runs a
second the store's thread costs a quarter less CPU than with a batch per loop turn
(docs/BENCHMARKS.md, redesign check)."""

Outcome = tuple[bool, Any]
"""(True, the result) or (False, the exception raised)."""


@dataclass
class _Call:
    method: Callable[..., Any]
    args: tuple[Any, ...]
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    outcome: Outcome = (False, None)
    futures: list[asyncio.Future[Any]] | None = None
    """A batch's: one future per item, and the method returns one `Outcome` per item."""


class StoreWorker:
    """Runs `SqliteDatabase` methods on one thread, in submission order per kind."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="evercron-store", daemon=True)
        self._thread.start()

    async def call(self, method: Callable[..., T], *args: Any, write: bool) -> T:
        """Run `method(*args)` on the store thread (in a write transaction when `write`)
        and return its result, or raise what it raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(method, args, write, loop, future))
        return await future

    def submit_batch(
        self,
        method: Callable[[list[Any]], list[Outcome]],
        items: list[Any],
        futures: list[asyncio.Future[Any]],
        *,
        write: bool,
    ) -> None:
        """Run `method(items)` on the store thread as one call; its i-th `Outcome` is
        delivered to `futures[i]` (a failure of the whole call to every one)."""
        loop = futures[0].get_loop()
        self._queue.put(_Call(method, (items,), write, loop, futures[0], futures=futures))

    def each(self, method: Callable[[I], T]) -> Callable[[list[I]], list[Outcome]]:
        """A batch method calling `method(item)` for each item: an item that raises has
        that error as its outcome (its statement changed nothing), but a passing failure
        of the store fails the whole batch, as it fails the whole group."""
        path = self._database.path

        def run_each(items: list[I]) -> list[Outcome]:
            outcomes: list[Outcome] = []
            for item in items:
                try:
                    with translated_errors(path):
                        outcomes.append((True, method(item)))
                except StoreUnavailable:
                    raise
                except Exception as error:
                    outcomes.append((False, error))
            return outcomes

        return run_each

    def close(self) -> None:
        """Finish queued calls and stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < _MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            self._run_group(group)
            if stop:
                return

    def _run_group(self, group: list[_Call]) -> None:
        writes = []
        for call in group:
            if call.write:
                writes.append(call)
            else:
                self._run(call)
        if writes:
            self._run_writes(writes)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        for call in group:
            by_loop.setdefault(call.loop, []).append(call)
        for loop, calls in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_deliver, calls)

    def _run(self, call: _Call) -> None:
        try:
            with translated_errors(self._database.path):
                call.outcome = (True, call.method(*call.args))
        except Exception as error:
            call.outcome = (False, error)

    def _run_writes(self, writes: list[_Call]) -> None:
        try:
            with self._database.write():
                for call in writes:
                    self._run(call)
                    if not call.outcome[0] and isinstance(call.outcome[1], StoreUnavailable):
                        raise call.outcome[1]
        except Exception as error:
            failure = error if isinstance(error, StoreUnavailable) else StoreUnavailable(str(error))
            for call in writes:
                call.outcome = (False, failure)


def _deliver(calls: list[_Call]) -> None:
    for call in calls:
        ok, value = call.outcome
        if call.futures is None:
            _settle(call.future, ok, value)
        elif ok:
            for future, (item_ok, item_value) in zip(call.futures, value, strict=True):
                _settle(future, item_ok, item_value)
        else:
            for future in call.futures:
                _settle(future, False, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # its caller was cancelled
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class CallBatch(Generic[I, T]):
    """Calls of `method(item)` made on an event loop within `BATCH_DELAY` of the first,
    run on the store thread as one call (`StoreWorker.submit_batch`, `StoreWorker.each`);
    each caller still gets its own result or error, and batches run in the order made."""

    def __init__(self, worker: StoreWorker, method: Callable[[I], T], *, write: bool) -> None:
        self._worker = worker
        self._method = worker.each(method)
        self._write = write
        self._pending: dict[asyncio.AbstractEventLoop, _Pending[I, T]] = {}

    async def call(self, item: I) -> T:
        """The outcome of `item` once its batch ran (and, for writes, committed)."""
        loop = asyncio.get_running_loop()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = _Pending()
            loop.call_later(BATCH_DELAY, self._send, loop)
        future: asyncio.Future[T] = loop.create_future()
        pending.items.append(item)
        pending.futures.append(future)
        return await future

    def flush(self) -> None:
        """Send every waiting batch now (before the worker closes)."""
        for loop in list(self._pending):
            self._send(loop)

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending.pop(loop, None)
        if pending is not None:
            self._worker.submit_batch(
                self._method, pending.items, pending.futures, write=self._write
            )


@dataclass
class _Pending(Generic[I, T]):
    items: list[I] = field(default_factory=list)
    futures: list[asyncio.Future[T]] = field(default_factory=list)
