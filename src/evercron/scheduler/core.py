"""The timing loop: one plan of (next fire time, job), one timer, every firing through
the one firing path (`evercron.scheduler.firing`).

The store is the source of truth: jobs are read from it and every firing is claimed in
it before anything is spawned, so a firing runs exactly once whoever else schedules the
same jobs (an upgrade's successor, a restarted daemon, another node). The timer is capped
so wall-clock steps are noticed; firings whose time passed while nothing could run them
(an outage, a stall, a store refusing writes) follow the misfire rules of
`evercron.scheduler.timing`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import enum
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from evercron.model import Concurrency, RunStatus, Trigger
from evercron.scheduler import requests
from evercron.scheduler.boot import current_boot
from evercron.scheduler.clock import Clock, SystemClock
from evercron.scheduler.firing import Firing, FiringPath
from evercron.scheduler.launcher import Launch, Launcher, ended_as
from evercron.scheduler.live import LiveOutput
from evercron.scheduler.observer import RunObserver
from evercron.scheduler.placement import Cluster
from evercron.scheduler.plan import Plan
from evercron.scheduler.timing import (
    BIG_STEP,
    Due,
    Planned,
    due_between,
    next_fire,
    plan_gap,
    plan_step,
)
from evercron.store import Claimed, LostRun, RetryPolicy, RunEnd, Store, StoredJob, persist

log = logging.getLogger("evercron.scheduler")
TIMER_CAP = 5.0  # wake at least this often to notice wall-clock steps
CROWD_PER_CPU = 100  # firings at one instant per CPU beyond which CPU bounds their start
CROWDED_LEAD = 0.25  # a crowded instant is claimed this early at the latest
PREPARE_LEAD = 1.0  # concurrency=allow: claim and prepare the process this early
CLAIM_LEAD = 0.05  # other policies: decide and claim this close to the fire time
STEP_TOLERANCE = 2.0  # wall-clock steps smaller than this are not told apart from noise
_JUST_BEFORE = dt.timedelta(microseconds=1)


class ForbiddenConcurrency(RuntimeError):
    """A manual trigger recorded as skipped: the job forbids overlap and is running, or
    (with several nodes) no live node has every tag the job's `run_on` asks for."""

    def __init__(self, message: str, run_id: int | None) -> None:
        super().__init__(message)
        self.run_id = run_id


class KillOutcome(enum.Enum):
    """What a kill request did."""

    KILLING = "killing"
    """The run's process here is being ended; the run ends `killed`."""
    ASKED = "asked"
    """Another live daemon process (or another node) owns the run: it was asked
    through the store."""
    ENDED = "ended"
    """Nothing was left to kill: the run was recorded as ended."""
    NOT_RUNNING = "not running"


class Scheduler:
    """Schedules every job in the store and launches its firings."""

    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        clock: Clock | None = None,
        live: LiveOutput | None = None,
        retry: RetryPolicy | None = None,
        owner_alive: Callable[[str], bool] = lambda owner: False,
        observer: RunObserver | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.cluster = cluster or Cluster.alone("local")
        """This node's view of the nodes and its lease (placement of firings)."""
        self.clock = clock or SystemClock()
        self.live = live or LiveOutput()
        self.retry = retry or RetryPolicy()
        self._owner_alive = owner_alive
        self.launcher = Launcher(
            store, self.live, self.clock, self.retry, self._retry_later, observer
        )
        self._jobs: dict[str, StoredJob] = {}
        self._path = FiringPath(
            store, owner, self.launcher, self._jobs.get, self.clock, self.retry, self.cluster
        )
        self._plan = Plan()
        self._wake = asyncio.Event()
        self._stopping = False
        self._keep_retries = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: set[asyncio.Task[Any]] = set()  # tasks asleep until a later time
        self._last_wall = self._last_mono = 0.0
        self._loaded_at = 0.0
        self._outage_since: float | None = None

    @property
    def jobs(self) -> dict[str, StoredJob]:
        """The jobs as this scheduler last read them, by name."""
        return dict(self._jobs)

    @property
    def next_fires(self) -> dict[str, dt.datetime]:
        """Each planned job's next fire time."""
        return self._plan.next_fires

    def running_runs(self) -> list[int]:
        """Ids of the runs this daemon process is running."""
        return list(self.launcher.running)

    # -- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Read every job and plan each from its last recorded firing: what came due
        while no daemon scheduled it is settled by the timing loop's misfire rules, in
        one gap with whatever comes due while this process starts."""
        self._loaded_at = self.clock.time()
        for stored in await self.store.list_jobs():
            self._jobs[stored.job.name] = stored
            await self._plan_from_last(stored)

    async def run(self) -> None:
        """The timing loop; returns after `stop()` or `hand_over()`."""
        self._last_wall, self._last_mono = self.clock.time(), self.clock.monotonic()
        while not self._stopping:
            jump = self._notice_clock()
            if self.retry.failing:
                # The store refuses writes: claim nothing now. The firings that come due
                # meanwhile are settled together (misfire rules) once it accepts them.
                self._outage_since = self._outage_since or self.clock.time()
                await self.clock.wait(self._wake, self.retry.max_interval)
                self._wake.clear()
                continue
            now = self.clock.time()
            earliest = self._plan.earliest()
            delay = TIMER_CAP if earliest is None else min(TIMER_CAP, earliest - PREPARE_LEAD - now)
            if delay > 0 and jump is None:
                await self.clock.wait(self._wake, delay)
                self._wake.clear()
                continue
            self._take_due(now, jump)
            self._outage_since = None

    def stop(self) -> None:
        """Stop scheduling new firings and retries (running ones are not touched)."""
        self._stopping = True
        self._keep_retries = False
        self._path.closed = True
        self.launcher.stop()
        self._wake.set()

    def hand_over(self) -> None:
        """Stop claiming firings (a successor claims them from now on). Firings already
        claimed here still start on time and pending retries of runs started here still
        happen: the claim rule leaves them to nobody else."""
        self._stopping = True
        self._keep_retries = True
        self._path.closed = True
        self._wake.set()

    def working(self) -> bool:
        """Whether a firing is being decided, claimed or run right now (tasks asleep
        until a later fire time or retry do not count, nor commands held until theirs)."""
        now = self.clock.time()
        if any((lch.release_at or 0.0) <= now for lch, _ in self.launcher.running.values()):
            return True
        return any(not t.done() and t not in self._waiting for t in self._tasks)

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the clock, known as waiting (see `working`)."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            await self.clock.sleep(seconds)
        finally:
            self._waiting.discard(task)

    async def wait_idle(self) -> None:
        """Return once nothing is pending here: no firing being claimed or waiting for
        its time, no retry waiting, no run going."""
        while True:
            pending = [t for t in (*self._tasks, *self.launcher.tasks) if not t.done()]
            if not pending:
                return
            await asyncio.wait(pending)

    async def close(self) -> None:
        """Give up what waits (firings not claimed yet, retries not due yet): each retry
        is recorded skipped. Call after `stop()` once runs are over."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def reload(self, name: str) -> None:
        """Re-read one job from the store after it was added, edited, paused or deleted."""
        stored = await self.store.get_job(name)
        now = self.clock.time()
        if stored is None:
            self._jobs.pop(name, None)
            self._plan.set(name, None)
        else:
            fresh = name not in self._jobs
            self._jobs[name] = stored
            if fresh:
                await self._plan_from_last(stored)
            else:
                self._plan_next(name, now)
        self._wake.set()

    async def resync(self) -> None:
        """Re-read every job and take each change into account (the correct path behind
        other nodes' hints: a hint may be lost)."""
        stored = {s.job.name: s for s in await self.store.list_jobs()}
        for name in sorted(set(stored) | set(self._jobs)):
            if stored.get(name) != self._jobs.get(name):
                await self.reload(name)

    def launch_reaped(self, lost: LostRun) -> None:
        """Start the retry of a lost run that this node claimed while reaping it."""
        retry = lost.retry
        if retry is None or not retry.owned or retry.run_id is None:
            return
        run = lost.run
        firing = Firing(run.job, run.scheduled_at, Trigger.RETRY, run.attempt + 1,
                        run.retry_of or run.id)  # fmt: skip
        if self._jobs.get(run.job) is None:  # (deleted meanwhile: ended at once)
            self._spawn(self._end_unknown(retry))
            return
        self._path.launch_claimed(firing, retry)

    async def _end_unknown(self, retry: Claimed) -> None:
        run_id = retry.run_id
        assert run_id is not None
        end = RunEnd(RunStatus.SKIPPED, dt.datetime.fromtimestamp(self.clock.time(), dt.UTC),
                     error="the job was deleted before this retry")  # fmt: skip
        await persist(self.retry, "end of a retry", lambda: self.store.finish(run_id, end))

    # -- requests ----------------------------------------------------------------------

    async def trigger(self, name: str) -> int:
        """Start a manual run now; its run id. Raises KeyError for an unknown job and
        `ForbiddenConcurrency` when the job forbids overlap and is running (the refused
        firing is recorded skipped)."""
        stored = self._jobs.get(name) or await self.store.get_job(name)
        if stored is None:
            raise KeyError(name)
        self._jobs.setdefault(name, stored)
        now = dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)
        if requests.forwarded(self.cluster, stored):
            answered = await requests.forward(self.store, self.clock, name, now)
            if answered is not None:
                run = await self.store.get_run(answered)
                if run is not None and run.status is RunStatus.SKIPPED:
                    raise ForbiddenConcurrency(run.error or "not started", answered)
                return answered
            # no node answered in time: recorded skipped here, saying which could
        (outcome,) = await self._path.fire([Firing(name, now, Trigger.MANUAL)])
        if outcome.run_id is None:
            raise RuntimeError("this daemon process is stopping; it starts nothing")
        if outcome.status is RunStatus.SKIPPED:
            raise ForbiddenConcurrency(outcome.error or "not started", outcome.run_id)
        return outcome.run_id

    async def answer_trigger_requests(self) -> None:
        """Start the manual runs other nodes asked for of jobs this node can run
        (`evercron.scheduler.requests`)."""
        await requests.answer_requests(
            self.store, self._path, self._jobs.get, self.cluster, self.clock
        )

    async def kill(self, run_id: int) -> KillOutcome:
        """End a running run wherever it runs: here (its process tree), in another live
        daemon process (asked through the store), or nowhere any more (recorded)."""
        if self.launcher.kill(run_id):
            return KillOutcome.KILLING
        run = await self.store.get_run(run_id)
        if run is None or run.status.finished:
            return KillOutcome.NOT_RUNNING
        elsewhere = run.node is not None and run.node != self.cluster.me.name
        theirs = run.owner is not None and run.owner != self.owner
        if elsewhere or (theirs and run.owner is not None and self._owner_alive(run.owner)):
            # Another node's run ends on that node (or is reaped `lost` with it).
            at = dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)
            asked = await self.store.request_kill(run_id, at)
            return KillOutcome.ASKED if asked else KillOutcome.NOT_RUNNING
        mine = run.owner == self.owner
        end = RunEnd(
            RunStatus.KILLED if mine else RunStatus.LOST,
            dt.datetime.fromtimestamp(self.clock.time(), dt.UTC),
            error="killed: its process was already gone"
            if mine
            else f"the daemon process that ran it ({run.owner}) is gone",
        )
        ended = await persist(
            self.retry, f"end of run {run_id}", lambda: self.store.finish(run_id, end)
        )
        self.live.end(run_id, str(end.status), run.output_bytes)
        if ended:
            self.launcher.observer.run_ended(ended_as(run.job, run_id, run.trigger, end))
        return KillOutcome.ENDED

    # -- planning ----------------------------------------------------------------------

    def _plan_next(self, name: str, after: float) -> None:
        stored = self._jobs.get(name)
        if stored is None or stored.paused or not stored.job.enabled:
            self._plan.set(name, None)
            return
        if stored.job.schedule.is_reboot:
            self._plan.set(name, None)
            self._spawn(self._fire_reboot(stored))
            return
        moment = dt.datetime.fromtimestamp(after, dt.UTC)
        self._plan.set(name, next_fire(stored.job, moment))
        self._wake.set()

    async def _plan_from_last(self, stored: StoredJob) -> None:
        """Plan a job from its last recorded firing (or its creation): a first fire time
        in the past is a gap the timing loop settles."""
        job = stored.job
        if stored.paused or not job.enabled or job.schedule.is_reboot:
            self._plan_next(job.name, self.clock.time())
            return
        last = await self.store.last_scheduled(job.name)
        since = max(last or stored.created_at, stored.created_at)
        self._plan.set(job.name, next_fire(job, since))
        self._wake.set()

    def _notice_clock(self) -> tuple[float, float] | None:
        """Compare the wall clock with elapsed time since the last look: a forward step
        is returned as (wall time where it began, seconds); a big backward step replans
        every job from the new time (a small one needs nothing: the claim key keeps
        every firing from running twice)."""
        wall, mono = self.clock.time(), self.clock.monotonic()
        elapsed = mono - self._last_mono
        step = (wall - self._last_wall) - elapsed
        began = self._last_wall + elapsed
        self._last_wall, self._last_mono = wall, mono
        if step > STEP_TOLERANCE:
            log.warning("the wall clock stepped forward by %.1fs", step)
            return began, step
        if step < -STEP_TOLERANCE:
            log.warning("the wall clock stepped back by %.1fs", -step)
            if -step >= BIG_STEP:
                for name in list(self._jobs):
                    self._plan_next(name, wall)
        return None

    def _take_due(self, now: float, jump: tuple[float, float] | None) -> None:
        prepared: list[tuple[str, dt.datetime]] = []
        late: list[tuple[str, list[Planned]]] = []
        for name, fire_at in self._plan.take_due(now + PREPARE_LEAD):
            stored = self._jobs.get(name)
            if stored is None:
                continue
            if fire_at.timestamp() <= now:
                late.append((name, self._settle_late(stored, fire_at, now, jump)))
                self._plan_next(name, now)
                continue
            self._plan_next(name, fire_at.timestamp())
            if _prepared_ahead(stored):
                prepared.append((name, fire_at))
            else:
                self._spawn(self._fire_when_due(name, fire_at))
        if prepared:
            self._spawn(self._fire_prepared(prepared))
        if late:
            self._spawn(self._fire_planned(late))

    def _settle_late(
        self, stored: StoredJob, fire_at: dt.datetime, now: float, jump: tuple[float, float] | None
    ) -> list[Planned]:
        """The fates of a job's firings from `fire_at` to now: normal lateness (misfire
        rules) up to a clock step, cronie's rules for what the step jumped over."""
        job = stored.job
        after = fire_at - _JUST_BEFORE
        cause = self._gap_cause(now, fire_at)
        if jump is None or jump[0] >= now:
            return plan_gap(job, due_between(job, after, now), now, cause)
        began, step = jump
        # Up to the step: ordinary lateness. What the step jumped over: cronie's rules.
        # The last `misfire_grace` before now: ordinary lateness again (the firing that
        # is due at the new time runs, as cron runs the current minute after a step).
        recent = max(began, now - job.misfire_grace)
        plans = plan_gap(job, due_between(job, after, began), now, cause)
        jumped_from = max(after, _utc(began))
        plans += plan_step(job, due_between(job, jumped_from, recent), step)
        plans += plan_gap(job, due_between(job, max(after, _utc(recent)), now), now, cause)
        return plans

    def _gap_cause(self, now: float, fire_at: dt.datetime | None = None) -> str:
        if fire_at is not None and fire_at.timestamp() < self._loaded_at:
            return f"no daemon was scheduling it (this one started at {_iso(self._loaded_at)})"
        if self._outage_since is not None:
            return f"the store refused writes from {_iso(self._outage_since)}"
        return "the daemon could not claim it in time (stopped, stalled or overloaded)"

    # -- firing ------------------------------------------------------------------------

    async def _fire_planned(self, gaps: list[tuple[str, list[Planned]]]) -> None:
        """Settle the gaps of jobs found due together: skipped rows and late firings are
        claimed at once, in one store call (a thousand jobs late together make one
        claim, not a thousand). Catch-ups of a `forbid` job run one after the other,
        each claimed when the one before ended (run-all means each of them runs)."""
        at_once: list[Firing] = []
        one_by_one: list[tuple[str, list[Firing]]] = []
        for name, plans in gaps:
            firings = [
                Firing(
                    name,
                    p.scheduled_at,
                    p.trigger,
                    skip_reason=p.skip_reason,
                    stands_for=p.stands_for,
                )
                for p in plans
            ]
            stored = self._jobs.get(name)
            forbid = stored is not None and stored.job.concurrency is Concurrency.FORBID
            queued = [
                f for f in firings if forbid and f.trigger is Trigger.CATCH_UP and not f.skip_reason
            ]
            at_once += [f for f in firings if f not in queued]
            if queued:
                one_by_one.append((name, queued))
        await self._path.fire(at_once, crowds(at_once))
        for name, queued in one_by_one:
            self._spawn(self._catch_up_one_by_one(name, queued))

    async def _catch_up_one_by_one(self, name: str, queued: list[Firing]) -> None:
        """A `forbid` job's catch-ups, each claimed once the run before it ended."""
        for firing in queued:
            for run_id in self.launcher.running_of(name):
                await self.launcher.finished(run_id)
            (outcome,) = await self._path.fire([firing])
            if outcome.owned and outcome.run_id is not None:
                await self.launcher.finished(outcome.run_id)

    async def _fire_prepared(self, due: list[tuple[str, dt.datetime]]) -> None:
        """Scheduled firings of preparable jobs, due together: claimed in one store call
        (a thousand jobs a second make a thousand claims a second), then launched held."""
        firings = [Firing(n, at, Trigger.SCHEDULE) for n, at in due]
        crowded = crowds(firings)
        if crowded:
            # The previous crowded instant's starts use every CPU; claiming and preparing
            # this one's meanwhile would only make them later. Its starts need no lead.
            await self.launcher.direct_started(min(crowded).timestamp() - CROWDED_LEAD)
        await self._path.fire(firings, crowded)

    async def _fire_when_due(self, name: str, fire_at: dt.datetime) -> None:
        # Whether an earlier run is still going is decided at the fire time itself. A
        # wake-up that comes late (a stall) is judged by the misfire rules like any gap.
        await self._sleep(fire_at.timestamp() - CLAIM_LEAD - self.clock.time())
        stored = self._jobs.get(name)
        if stored is None:
            return
        now = self.clock.time()
        due = Due(1, fire_at, (fire_at,))
        await self._fire_planned([(name, plan_gap(stored.job, due, now, self._gap_cause(now)))])

    async def _fire_reboot(self, stored: StoredJob) -> None:
        # Keyed by the boot's start time as first recorded for this boot id (and node,
        # where several share the store): once per boot of each node, whoever restarts,
        # even after the clock was stepped.
        boot_id, boot_time = current_boot()
        booted = await self.store.boot_time(boot_id, boot_time)
        await self._path.fire([Firing(stored.job.name, booted, Trigger.SCHEDULE)])

    def _retry_later(self, launch: Launch, backoff: float) -> None:
        self._spawn(self._retry(launch, backoff))

    async def _retry(self, launch: Launch, backoff: float) -> None:
        retry = Firing(
            launch.job.name,
            launch.scheduled_at,
            Trigger.RETRY,
            launch.attempt + 1,
            launch.retry_of or launch.run_id,
        )
        stopped = dataclasses.replace(retry, skip_reason="the daemon stopped before this retry")
        try:
            await self._sleep(backoff)
        except asyncio.CancelledError:
            await asyncio.shield(self._path.fire([stopped]))
            raise
        await self._path.fire([stopped if self._stopping and not self._keep_retries else retry])

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def crowds(firings: Sequence[Firing]) -> set[dt.datetime]:
    """The times for which `firings` are a crowd (more than `crowded_instant()` of them
    for the same time): whether due ahead or late, CPU bounds how soon they start."""
    crowd = crowded_instant()
    at_once = collections.Counter(firing.scheduled_at for firing in firings)
    return {fire_at for fire_at, count in at_once.items() if count > crowd}


def crowded_instant() -> int:
    """How many firings due at the same instant make it crowded (see `LaunchMode.DIRECT`):
    100 per CPU. Below that, preparing each behind a waiting /bin/sh buys precision with
    CPU that is free; far above it, that shell's exec is what makes firings late
    (docs/BENCHMARKS.md)."""
    return CROWD_PER_CPU * len(os.sched_getaffinity(0))


def _prepared_ahead(stored: StoredJob) -> bool:
    """Whether a firing is claimed and its process prepared `PREPARE_LEAD` ahead: nothing
    is left to decide at the fire time (overlap allowed, no jitter)."""
    job = stored.job
    return job.concurrency is Concurrency.ALLOW and not job.jitter


def _utc(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, dt.UTC)


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="seconds")
