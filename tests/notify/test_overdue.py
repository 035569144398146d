"""The overdue watch: one timer per run of a job with warn_after, one event per run."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from evercron.model import Job, NotifyEvent, RunStatus, Trigger
from evercron.notify.overdue import OverdueWatch
from evercron.scheduler.observer import RunEnded, RunStarted
from evercron.store import Claim, EventPolicy
from evercron.store.sqlite import SqliteStore

NOW = dt.datetime.now(dt.UTC)


def test_a_run_past_warn_after_is_overdue_once_and_one_that_ended_is_not(
    tmp_path: Path,
) -> None:
    slow = Job.from_mapping(
        {"name": "slow", "schedule": "@daily", "command": "true", "warn_after": "50ms"}
    )
    plain = Job.from_mapping({"name": "plain", "schedule": "@daily", "command": "true"})

    async def scenario() -> tuple[list[tuple[str, int]], int, int]:
        store = SqliteStore(tmp_path / "db")
        await store.migrate()
        await store.want_events(EventPolicy(frozenset({NotifyEvent.OVERDUE})))
        claims = [Claim(name, NOW, Trigger.MANUAL) for name in ("slow", "slow", "plain")]
        late, quick, other = (c.run_id or 0 for c in await store.claim(claims, "me"))
        written = asyncio.Event()
        wakes = 0

        def wake() -> None:
            nonlocal wakes
            wakes += 1
            written.set()

        watch = OverdueWatch(store, wake)
        for job, run_id in ((slow, late), (slow, quick), (plain, other)):
            watch.run_started(RunStarted(job, run_id, Trigger.MANUAL, None))
        watch.run_ended(RunEnded("slow", quick, Trigger.MANUAL, RunStatus.SUCCEEDED, NOW, 0.01))
        await asyncio.wait_for(written.wait(), 20)
        await watch.close()
        found = [(e.job, e.run.id) for e in await store.undispatched_events()]
        await store.close()
        return found, late, wakes

    found, late, wakes = asyncio.run(scenario())
    assert found == [("slow", late)] and wakes == 1
