"""When jobs fire: next fire times in a job's zone, and which firings were missed."""

from __future__ import annotations

import datetime as dt
from functools import cache

import tzlocal

from evercron.model import MAX_CATCH_UP, Job, Misfire


@cache
def local_zone() -> dt.tzinfo:
    """The system's time zone (the default for jobs without one)."""
    try:
        return tzlocal.get_localzone()
    except Exception:
        return dt.UTC


def job_zone(job: Job) -> dt.tzinfo:
    """The zone a job's schedule is read in."""
    return job.zone or local_zone()


def next_fire(job: Job, after: dt.datetime) -> dt.datetime | None:
    """The job's first fire time strictly after `after` (aware, in the job's zone)."""
    return job.schedule.next(after.astimezone(job_zone(job)))


def missed_firings(
    job: Job, since: dt.datetime, now: dt.datetime
) -> tuple[list[dt.datetime], dt.datetime | None]:
    """Firings after `since` that are due by `now`: those more than `misfire_grace` late
    (missed; kept per the job's misfire policy, `run-all` capped at MAX_CATCH_UP) and the
    latest one still within its grace, which runs normally (None if there is none)."""
    missed: list[dt.datetime] = []
    on_time: dt.datetime | None = None
    limit = now.timestamp()
    current = next_fire(job, since)
    count = 0
    while current is not None and current.timestamp() <= limit and count < 100_000:
        if limit - current.timestamp() > job.misfire_grace:
            missed.append(current)
            if len(missed) > MAX_CATCH_UP:
                missed.pop(0)
        else:
            on_time = current
        current = job.schedule.next(current)
        count += 1
    if job.misfire is Misfire.SKIP:
        return [], on_time
    if job.misfire is Misfire.RUN_ONCE:
        return missed[-1:] if on_time is None else [], on_time
    return missed, on_time
