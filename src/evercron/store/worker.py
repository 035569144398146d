"""The SQLite store's one thread: every call to the database, with group commits.

SQLite blocks on disk, so calls never run on the event loop. Writes queued while the
thread is busy run together in one transaction: a thousand claims due in the same second
cost one commit, not a thousand. Each call's result is delivered only after its group has
committed, so a claim is durable before anything is spawned for it. Reads run outside the
write transaction, so a lock held by another process delays writes, not reads.

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
from dataclasses import dataclass
from typing import Any, TypeVar

from evercron.store.records import StoreUnavailable
from evercron.store.sqlite_database import SqliteDatabase, translated_errors

T = TypeVar("T")
_MAX_GROUP = 2000


@dataclass
class _Call:
    method: Callable[..., Any]
    args: tuple[Any, ...]
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] = (False, None)


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
        if call.future.done():
            continue
        ok, value = call.outcome
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)
