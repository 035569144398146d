"""Building blocks for scheduler tests: a real store, claims and launches made the way
the firing path makes them."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from evercron.model import Job, Trigger
from evercron.scheduler.clock import Clock, SystemClock
from evercron.scheduler.command import command_for
from evercron.scheduler.launcher import Launch, Launcher, launch_mode
from evercron.scheduler.live import LiveOutput
from evercron.store import Claim, RetryPolicy, Store
from evercron.store.sqlite import SqliteStore


async def opened_store(path: Path) -> SqliteStore:
    """A migrated SQLite store at `path`."""
    store = SqliteStore(path)
    await store.migrate()
    return store


async def claim(
    store: Store, job: str, at: dt.datetime, trigger: Trigger = Trigger.SCHEDULE
) -> int:
    """Claim one firing as "owner"; its run id (the test expects to own it)."""
    (outcome,) = await store.claim([Claim(job, at, trigger)], "owner")
    assert outcome.run_id is not None
    return outcome.run_id


def launcher_for(store: Store, clock: Clock | None = None) -> Launcher:
    """A launcher with no retries."""
    return Launcher(store, LiveOutput(), clock or SystemClock(), RetryPolicy(), lambda *_: None)


def launch_of(
    run_id: int,
    job: Job,
    at: dt.datetime,
    release_at: float | None = None,
    crowded: bool = False,
    trigger: Trigger = Trigger.SCHEDULE,
) -> Launch:
    """The launch the firing path would make for this claimed run."""
    command = command_for(job, run_id, at, 1, tracking="session" if crowded else "auto")
    mode = launch_mode(command, release_at, time.time(), crowded)
    return Launch(run_id, job, at, trigger, command, mode, release_at)
