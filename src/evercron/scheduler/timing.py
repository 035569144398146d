"""When jobs fire: next fire times in a job's zone, and what becomes of firings whose
time passed while nobody could run them (an outage, a stall, a clock step).

The rules (a firing is *late* when it starts after its time, *missed* when more than the
job's `misfire_grace` late):
- A late firing still runs.
- Missed firings follow the job's `misfire` policy: `skip` runs none of them, `run-once`
  runs the newest (unless a late firing runs anyway), `run-all` runs each.
- Every firing that does not run is recorded `skipped` with the reason. At most
  `MAX_CATCH_UP` firings of one job in one gap get a row each (the newest); one more
  `skipped` row stands for the older rest and says how many, from when to when, so a
  day's outage of an every-second job writes 101 rows, not 86,400.
- A wall-clock step while the daemon runs follows cronie: forward by less than
  `BIG_STEP`, each skipped time of a fixed-time job runs once and skipped times of other
  jobs are recorded; a bigger step forward records them all and runs none; backward,
  nothing runs twice (the claim key sees to it), and a bigger step back is planned from
  the new time.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass
from functools import cache

import tzlocal

from evercron.model import MAX_CATCH_UP, Job, Misfire, Trigger

BIG_STEP = 3 * 3600.0
"""A wall-clock step at least this large is planned from the new time (cronie's rule)."""
COUNT_LIMIT = 1_000_000
"""Fire times counted in one gap at most (a bound on the work; the summary says "more")."""


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


@dataclass(frozen=True)
class Due:
    """The fire times of a job in an interval: how many (up to `COUNT_LIMIT`), the first,
    and the newest `MAX_CATCH_UP + 1` of them, oldest first."""

    count: int
    first: dt.datetime | None
    newest: tuple[dt.datetime, ...]

    @property
    def counted_all(self) -> bool:
        """Whether `count` is exact (not stopped at `COUNT_LIMIT`)."""
        return self.count < COUNT_LIMIT


def due_between(job: Job, after: dt.datetime, until: float) -> Due:
    """Fire times strictly after `after` and at or before `until` (POSIX time)."""
    newest: deque[dt.datetime] = deque(maxlen=MAX_CATCH_UP + 1)
    count, first = 0, None
    current = next_fire(job, after)
    while current is not None and current.timestamp() <= until and count < COUNT_LIMIT:
        first = first or current
        newest.append(current)
        count += 1
        current = job.schedule.next(current)
    return Due(count, first, tuple(newest))


@dataclass(frozen=True)
class Planned:
    """One firing's fate: run with `trigger`, or recorded skipped for `skip_reason`."""

    scheduled_at: dt.datetime
    trigger: Trigger
    skip_reason: str | None = None
    stands_for: int = 1
    """How many firings a skipped row stands for (more than one for a summary row)."""


def plan_gap(job: Job, due: Due, now: float, cause: str) -> list[Planned]:
    """What to do with firings whose time has passed (`due`, judged at `now`): late
    ones run, missed ones follow the job's misfire policy. `cause` says why they are
    late, for the recorded reasons (e.g. "the daemon was not running")."""
    newest = list(due.newest)
    rest = _summary(job, due, cause) if len(newest) > MAX_CATCH_UP else None
    individual = newest[-MAX_CATCH_UP:]
    late = [t for t in individual if now - t.timestamp() <= job.misfire_grace]
    missed = [t for t in individual if now - t.timestamp() > job.misfire_grace]
    plans = [Planned(t, Trigger.SCHEDULE) for t in late]
    policy = job.misfire
    for fire_at in missed:
        newest_missed = fire_at is missed[-1]
        if policy is Misfire.RUN_ALL or (policy is Misfire.RUN_ONCE and newest_missed and not late):
            plans.append(Planned(fire_at, Trigger.CATCH_UP))
            continue
        if policy is Misfire.RUN_ONCE:
            why = "a later firing of the same gap runs instead"
        else:
            why = "nothing is run for missed firings"
        reason = (
            f"missed: {cause}; it was {now - fire_at.timestamp():.0f}s late "
            f"(misfire_grace {job.misfire_grace:g}s, misfire={policy}: {why})"
        )
        plans.append(Planned(fire_at, Trigger.SCHEDULE, reason))
    if rest is not None:
        plans.append(rest)
    return sorted(plans, key=lambda plan: plan.scheduled_at.timestamp())


def plan_step(job: Job, due: Due, step: float) -> list[Planned]:
    """What to do with the fire times a forward wall-clock step of `step` seconds
    jumped over (`due`): cronie's rule, see the module text."""
    runs = job.schedule.is_fixed_time and step < BIG_STEP
    cause = f"the wall clock stepped forward by {step:.0f}s"
    individual = list(due.newest)[-MAX_CATCH_UP:]
    if runs:
        plans = [Planned(t, Trigger.CATCH_UP) for t in individual]
    else:
        why = (
            "a step that large is planned from the new time"
            if step >= BIG_STEP
            else "only fixed-time jobs run the times a step skipped"
        )
        plans = [Planned(t, Trigger.SCHEDULE, f"missed: {cause} ({why})") for t in individual]
    if len(due.newest) > MAX_CATCH_UP:
        plans.append(_summary(job, due, cause))
    return sorted(plans, key=lambda plan: plan.scheduled_at.timestamp())


def _summary(job: Job, due: Due, cause: str) -> Planned:
    """The one skipped row that stands for the firings older than the newest
    `MAX_CATCH_UP` of a gap."""
    assert due.first is not None
    last = due.newest[0]  # the newest of the rest: just before the individual ones
    many = due.count - MAX_CATCH_UP
    count = f"{many}" if due.counted_all else f"more than {many}"
    reason = (
        f"missed: {cause}; this row stands for {count} firings of {job.name} from "
        f"{due.first.isoformat()} to {last.isoformat()} (misfire={job.misfire}; only the "
        f"newest {MAX_CATCH_UP} of a gap get a row each)"
    )
    return Planned(due.first, Trigger.SCHEDULE, reason, stands_for=many)
