"""The `overdue` event: a run still running after its job's `warn_after`, once per run.

One timer per run of a job that has `warn_after`, armed when its command is let run and
cancelled when its end is recorded - no polling. The process that runs the command
watches it (a draining generation keeps watching its own runs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from evercron.logfields import about
from evercron.scheduler.observer import RunEnded, RunStarted
from evercron.store import Store, StoreError

log = logging.getLogger("evercron.notify")


class OverdueWatch:
    """A `RunObserver` that writes the `overdue` event of runs past `warn_after`, then
    calls `written` (the dispatcher's wake-up)."""

    def __init__(self, store: Store, written: Callable[[], None]) -> None:
        self._store = store
        self._written = written
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def run_started(self, started: RunStarted) -> None:
        """Arm the run's timer when its job has `warn_after`."""
        warn_after = started.job.warn_after
        if warn_after is not None:
            loop = asyncio.get_running_loop()
            self._timers[started.run_id] = loop.call_later(warn_after, self._due, started.run_id)

    def run_ended(self, ended: RunEnded) -> None:
        """It ended in time (or not: then the event is written already)."""
        timer = self._timers.pop(ended.run_id, None)
        if timer is not None:
            timer.cancel()

    def firings_missed(self, job: str, count: int) -> None:
        """Nothing ran: nothing to watch."""

    async def close(self) -> None:
        """Cancel every timer and let the writes under way finish."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._writes:
            await asyncio.wait(list(self._writes))

    def _due(self, run_id: int) -> None:
        self._timers.pop(run_id, None)
        task = asyncio.get_running_loop().create_task(self._write(run_id))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, run_id: int) -> None:
        try:
            written = await self._store.add_overdue_event(run_id)
        except StoreError as error:  # (a notice, not a fact: it is not retried)
            log.warning(
                "run %d: its overdue event was not written: %s",
                run_id,
                error,
                extra=about(run=run_id),
            )
            return
        if written:
            self._written()
