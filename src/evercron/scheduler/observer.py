"""What the scheduler tells about runs as they happen, to whoever counts them or acts on
them (metrics, the notification dispatcher, the overdue watch): one small interface.

Observers are called on the event loop and must return at once - a dict update, a timer,
an `asyncio.Event.set()` - never a store call awaited in place: they are on the path
that starts and ends every run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from evercron.model import Job, RunStatus, Trigger


@dataclass(frozen=True)
class RunStarted:
    """A run's command was let run, `delay` seconds after it was due (None when it was
    not expected on time: manual, retry, catch-up, @reboot)."""

    job: Job
    run_id: int
    trigger: Trigger
    delay: float | None


@dataclass(frozen=True)
class RunEnded:
    """A run's end is in the store: a result, or a firing recorded `skipped` (then
    `duration` is None, as for every run that never started)."""

    job: str
    run_id: int
    trigger: Trigger
    status: RunStatus
    finished_at: dt.datetime
    duration: float | None = None


class RunObserver(Protocol):
    """Told about every run this daemon process starts or records the end of."""

    def run_started(self, started: RunStarted) -> None:
        """A run's command was let run."""

    def run_ended(self, ended: RunEnded) -> None:
        """A run's end was recorded."""

    def firings_missed(self, job: str, count: int) -> None:
        """`count` firings of `job` were not run: they could only have started after
        their `misfire_grace` (each is recorded `skipped`, or a row stands for them)."""


class Observers:
    """Several observers as one (none: nothing happens)."""

    def __init__(self, observers: Iterable[RunObserver] = ()) -> None:
        self._observers = tuple(observers)

    def run_started(self, started: RunStarted) -> None:
        """Tell each observer."""
        for observer in self._observers:
            observer.run_started(started)

    def run_ended(self, ended: RunEnded) -> None:
        """Tell each observer."""
        for observer in self._observers:
            observer.run_ended(ended)

    def firings_missed(self, job: str, count: int) -> None:
        """Tell each observer."""
        for observer in self._observers:
            observer.firings_missed(job, count)
