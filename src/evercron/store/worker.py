"""Store calls from the event loop, made on one worker thread with group commits.

SQLite blocks on disk, so calls never run on the event loop. Calls queued while the
thread is busy are run together in one transaction (`SqliteStore.batch`): a thousand
claims due in the same second cost one commit, not a thousand. Each call's result is
delivered only after its group has committed, so a claim is durable before anything is
spawned for it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from evercron.store.sqlite import SqliteStore

P = ParamSpec("P")
T = TypeVar("T")
_MAX_GROUP = 2000
log = logging.getLogger("evercron.store")


@dataclass
class _Call:
    method: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    outcome: tuple[bool, Any] = (False, None)


class StoreWorker:
    """Runs blocking store methods on a single thread, in submission order."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="evercron-store", daemon=True)
        self._thread.start()

    async def __call__(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(method, args, kwargs, loop, future))
        return await future

    def submit(self, method: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        """Queue a call whose result nobody waits for: it runs in order with the others
        (a later awaited call sees its effect); a failure is logged."""
        self._queue.put(_Call(method, args, kwargs, None, None))

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
        try:
            with self._store.batch():
                for call in group:
                    try:
                        call.outcome = (True, call.method(*call.args, **call.kwargs))
                    except Exception as error:
                        call.outcome = (False, error)
        except Exception as error:
            for call in group:
                call.outcome = (False, error)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        for call in group:
            if call.loop is not None:
                by_loop.setdefault(call.loop, []).append(call)
            elif not call.outcome[0]:
                log.error("store call %s failed: %s", call.method.__name__, call.outcome[1])
        for loop, calls in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_deliver, calls)


def _deliver(calls: list[_Call]) -> None:
    for call in calls:
        if call.future is None or call.future.done():
            continue
        ok, value = call.outcome
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)
