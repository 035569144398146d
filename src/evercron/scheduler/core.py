"""The timing loop: one heap of (next fire time, job), one timer, claims, policies.

The store is the source of truth: jobs are read from it and every firing is claimed in it
(one INSERT, unique per job, scheduled time and attempt) before anything is spawned, so a
firing runs exactly once whoever else schedules the same jobs (an upgrade's successor, a
restarted daemon, another node). The timer is capped so clock steps are noticed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import heapq
import itertools
import os
import random
import time
from collections.abc import Coroutine
from typing import Any

from evercron.model import Concurrency, Job, RunStatus, Trigger
from evercron.scheduler.boot import current_boot
from evercron.scheduler.launcher import Firing, Launcher
from evercron.scheduler.live import LiveOutput
from evercron.scheduler.timing import missed_firings, next_fire
from evercron.store import SqliteStore, StoredJob
from evercron.store.worker import StoreWorker

TIMER_CAP = 5.0  # wake at least this often to notice wall-clock steps
CROWD_PER_CPU = 100  # firings at one instant per CPU beyond which CPU bounds their start
CROWDED_LEAD = 0.25  # a crowded instant is claimed this early at the latest
PREPARE_LEAD = 1.0  # concurrency=allow: claim and prepare the process this early
CLAIM_LEAD = 0.05  # other policies: decide and claim this close to the fire time


class ForbiddenConcurrency(RuntimeError):
    """A manual trigger refused because the job forbids overlapping runs."""


class Scheduler:
    """Schedules every job in the store and launches its firings."""

    def __init__(
        self, store: SqliteStore, db: StoreWorker, owner: str, live: LiveOutput | None = None
    ) -> None:
        self.store = store
        self.db = db
        self.owner = owner
        self.live = live or LiveOutput()
        self.launcher = Launcher(store, db, owner, self.live, self._retry_later)
        self._jobs: dict[str, StoredJob] = {}
        self._heap: list[tuple[float, int, str, dt.datetime, int]] = []
        self._generation: dict[str, int] = {}
        self._sequence = itertools.count()
        self._wake = asyncio.Event()
        self._stopping = False
        self._keep_retries = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.next_fires: dict[str, dt.datetime] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Read every job, run what was missed while nobody scheduled, plan the rest."""
        now = dt.datetime.now(dt.UTC)
        for stored in await self.db(self.store.list_jobs):
            self._jobs[stored.job.name] = stored
            await self._catch_up(stored, now)
            self._plan(stored.job.name, now)

    async def run(self) -> None:
        """The timing loop; returns after `stop()`."""
        while not self._stopping:
            delay = TIMER_CAP
            if self._heap:
                delay = min(delay, self._heap[0][0] - PREPARE_LEAD - time.time())
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            prepared: list[tuple[str, dt.datetime]] = []
            limit = time.time() + PREPARE_LEAD
            while self._heap and self._heap[0][0] <= limit:
                _, _, name, fire_at, generation = heapq.heappop(self._heap)
                if self._generation.get(name) != generation:
                    continue  # superseded by an edit, pause or deletion
                self._plan(name, fire_at)
                if self._preparable(name):
                    prepared.append((name, fire_at))
                else:
                    self._spawn(self._fire(name, fire_at, Trigger.SCHEDULE))
            if prepared:
                self._spawn(self._fire_prepared(prepared))

    def stop(self) -> None:
        """Stop scheduling new firings (running ones are not touched)."""
        self._stopping = True
        self._keep_retries = False
        self.launcher.stop()
        self._wake.set()

    def hand_over(self) -> None:
        """Stop claiming firings (a successor claims them from now on). Firings already
        claimed here still start on time and pending retries of runs started here still
        happen: the claim rule leaves them to nobody else."""
        self._stopping = True
        self._keep_retries = True
        self._wake.set()

    async def wait_idle(self) -> None:
        """Return once nothing is pending here: no firing being claimed or waiting for
        its time, no retry waiting, no run going."""
        while True:
            pending = [t for t in (*self._tasks, *self.launcher.tasks) if not t.done()]
            if not pending:
                return
            await asyncio.wait(pending)

    async def reload(self, name: str) -> None:
        """Re-read one job from the store after it was added, edited, paused or deleted."""
        stored = await self.db(self.store.get_job, name)
        if stored is None:
            self._jobs.pop(name, None)
            self._generation[name] = self._generation.get(name, 0) + 1
            self.next_fires.pop(name, None)
        else:
            fresh = name not in self._jobs
            self._jobs[name] = stored
            if fresh:
                await self._catch_up(stored, dt.datetime.now(dt.UTC))
            self._plan(name, dt.datetime.now(dt.UTC))
        self._wake.set()

    # -- planning ----------------------------------------------------------------------

    def _plan(self, name: str, after: dt.datetime) -> None:
        generation = self._generation.get(name, 0) + 1
        self._generation[name] = generation
        stored = self._jobs.get(name)
        self.next_fires.pop(name, None)
        if stored is None or stored.paused or not stored.job.enabled:
            return
        if stored.job.schedule.is_reboot:
            self._spawn(self._fire_reboot(stored.job))
            return
        fire_at = next_fire(stored.job, after)
        if fire_at is None:
            return
        self.next_fires[name] = fire_at
        heapq.heappush(
            self._heap, (fire_at.timestamp(), next(self._sequence), name, fire_at, generation)
        )
        self._wake.set()

    async def _catch_up(self, stored: StoredJob, now: dt.datetime) -> None:
        job = stored.job
        if stored.paused or not job.enabled or job.schedule.is_reboot:
            return
        last = await self.db(self.store.last_scheduled, job.name)
        since = max(last or stored.created_at, stored.created_at)
        missed, on_time = missed_firings(job, since, now)
        for fire_at in missed:
            self._spawn(self._fire(job.name, fire_at, Trigger.CATCH_UP))
        if on_time is not None:
            self._spawn(self._fire(job.name, on_time, Trigger.SCHEDULE))

    # -- firing ------------------------------------------------------------------------

    def _preparable(self, name: str) -> bool:
        """Whether firings of `name` are claimed and prepared ahead, with no decision left
        for the fire time (overlap allowed, no jitter)."""
        stored = self._jobs.get(name)
        return stored is not None and _prepared_ahead(stored.job)

    async def _fire_prepared(self, due: list[tuple[str, dt.datetime]]) -> None:
        """Scheduled firings of preparable jobs, due together: claimed in one store call
        (a thousand jobs a second make a thousand claims a second), then launched."""
        wanted: list[tuple[Job, dt.datetime]] = []
        for name, fire_at in due:
            stored = self._jobs.get(name)
            if stored is None or stored.paused or not stored.job.enabled:
                continue
            late = time.time() - fire_at.timestamp()
            if late > stored.job.misfire_grace:
                self.launcher.lag.missed(name, late)  # overloaded, or the clock jumped
                continue
            wanted.append((stored.job, fire_at))
        at_once = collections.Counter(fire_at for _, fire_at in wanted)
        crowd = crowded_instant()
        crowded = [fire_at for fire_at, count in at_once.items() if count > crowd]
        if crowded:
            # The previous crowded instant's starts use every CPU; claiming and preparing
            # this one's meanwhile would only make them later. Its starts need no lead.
            await self.launcher.crowd_started(min(crowded).timestamp() - CROWDED_LEAD)
        if self._stopping or not wanted:
            return  # not claimed: whoever schedules next runs them (or counts them missed)
        claims = [(job.name, fire_at) for job, fire_at in wanted]
        run_ids = await self.db(self.store.claim_scheduled, claims, self.owner)
        for (job, fire_at), run_id in zip(wanted, run_ids, strict=True):
            if run_id is not None:  # else another process owns this firing
                firing = Firing(run_id, job, fire_at, Trigger.SCHEDULE)
                self.launcher.launch(firing, fire_at.timestamp(), at_once[fire_at] > crowd)

    async def _fire(self, name: str, fire_at: dt.datetime, trigger: Trigger) -> None:
        stored = self._jobs.get(name)
        if stored is None or stored.paused or not stored.job.enabled:
            return
        job = stored.job
        prepare = _prepared_ahead(job)
        if not prepare:
            # Whether an earlier run is still going is decided at the fire time itself.
            early = fire_at.timestamp() - CLAIM_LEAD - time.time()
            if early > 0:
                await asyncio.sleep(early)
            stored = self._jobs.get(name)
            if stored is None or stored.paused or not stored.job.enabled:
                return
            job = stored.job
        late = time.time() - fire_at.timestamp()
        if trigger is Trigger.SCHEDULE and late > job.misfire_grace:
            # Overloaded (or the clock jumped): this firing is missed, not queued forever.
            self.launcher.lag.missed(name, late)
            return
        busy = [] if prepare else await self._busy_runs(job)
        if self._stopping:
            return  # not claimed: whoever schedules next runs it (or counts it missed)
        if busy and job.concurrency is Concurrency.FORBID:
            await self.db(
                self.store.claim,
                name,
                fire_at,
                trigger,
                self.owner,
                status=RunStatus.SKIPPED,
                error=f"concurrency=forbid: run {busy[0]} is still running",
            )
            return
        run_id = await self.db(self.store.claim, name, fire_at, trigger, self.owner)
        if run_id is None:
            return  # another process owns this firing
        if busy and job.concurrency is Concurrency.REPLACE:
            for other in busy:
                await self.launcher.kill(other)
        release_at = fire_at.timestamp()
        if job.jitter:
            release_at += random.uniform(0, job.jitter)
        self.launcher.launch(Firing(run_id, job, fire_at, trigger), release_at)

    async def _fire_reboot(self, job: Job) -> None:
        # Keyed by the boot's start time as first recorded for this boot id: once per
        # machine boot, whoever restarts, even after the clock was stepped.
        boot_id, boot_time = current_boot()
        booted = await self.db(self.store.boot_time, boot_id, boot_time)
        run_id = await self.db(self.store.claim, job.name, booted, Trigger.SCHEDULE, self.owner)
        if run_id is not None:
            self.launcher.launch(Firing(run_id, job, booted, Trigger.SCHEDULE))

    async def trigger(self, name: str) -> int:
        """Start a manual run now; its run id. Raises KeyError for an unknown job and
        `ForbiddenConcurrency` when the job forbids overlap and is running."""
        stored = self._jobs.get(name) or await self.db(self.store.get_job, name)
        if stored is None:
            raise KeyError(name)
        busy = await self._busy_runs(stored.job)
        if busy and stored.job.concurrency is Concurrency.FORBID:
            raise ForbiddenConcurrency(f"run {busy[0]} of {name} is still running")
        now = dt.datetime.now(dt.UTC)
        run_id = await self.db(self.store.claim, name, now, Trigger.MANUAL, self.owner)
        assert run_id is not None  # manual runs never collide
        if busy and stored.job.concurrency is Concurrency.REPLACE:
            for other in busy:
                await self.launcher.kill(other)
        self.launcher.launch(Firing(run_id, stored.job, now, Trigger.MANUAL))
        return run_id

    async def _busy_runs(self, job: Job) -> list[int]:
        runs = await self.db(self.store.list_runs, job.name, RunStatus.RUNNING, 50)
        return [run.id for run in runs]

    def _retry_later(self, firing: Firing, backoff: float) -> None:
        self._spawn(self._retry(firing, backoff))

    async def _retry(self, firing: Firing, backoff: float) -> None:
        await asyncio.sleep(backoff)
        if self._stopping and not self._keep_retries:
            return
        stored = self._jobs.get(firing.job.name)
        job = stored.job if stored else firing.job
        attempt = firing.attempt + 1
        run_id = await self.db(
            self.store.claim,
            job.name,
            firing.scheduled_at,
            Trigger.RETRY,
            self.owner,
            attempt=attempt,
            retry_of=firing.retry_of or firing.run_id,
        )
        if run_id is not None:
            self.launcher.launch(
                Firing(
                    run_id,
                    job,
                    firing.scheduled_at,
                    Trigger.RETRY,
                    attempt,
                    firing.retry_of or firing.run_id,
                )
            )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def crowded_instant() -> int:
    """How many firings due at the same instant make it crowded (see `Launcher.launch`):
    100 per CPU. Below that, preparing each behind a waiting /bin/sh buys precision with
    CPU that is free; far above it, that shell's exec (0.6 ms of CPU here, as much as a
    `date`) is what makes firings late, and a thousand a second no longer fit on 2
    CPUs (docs/BENCHMARKS.md)."""
    return CROWD_PER_CPU * len(os.sched_getaffinity(0))


def _prepared_ahead(job: Job) -> bool:
    """Whether a firing of `job` is claimed and its process prepared `PREPARE_LEAD` ahead:
    nothing is left to decide at the fire time (overlap allowed, no jitter)."""
    return job.concurrency is Concurrency.ALLOW and not job.jitter
