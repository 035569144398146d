"""The one path every firing takes: decide, place, claim, launch.

Scheduled, prepared ahead, crowded, late, caught up, retried, triggered by hand or by a
boot - every firing is decided by `decide()` (the job's state and policies, applied once),
placed (`evercron.scheduler.placement`: which node tries when; scheduled firings and
catch-ups only - a manual run, a retry and a boot's firing belong to this node), claimed
in the store (which holds `concurrency = "forbid"` itself, whichever process or node runs
the other run) and, when owned, handed to the launcher with the launch mode chosen by
`launch_mode()`. A firing that does not run is a `skipped` row with its reason. Nothing
is claimed while this node's lease is not healthy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import random
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

from evercron.model import Concurrency, Job, RunStatus, Trigger
from evercron.scheduler.clock import Clock
from evercron.scheduler.command import command_for, own_limits
from evercron.scheduler.launcher import Launch, Launcher, LaunchMode, launch_mode
from evercron.scheduler.observer import RunEnded
from evercron.scheduler.placement import Cluster
from evercron.store import Claim, Claimed, RetryPolicy, RunEnd, Store, StoredJob, persist

MANUAL_PATIENCE = 5.0
"""Seconds a manual trigger waits for a store that refuses writes before it is refused."""

_NOT_HERE = Claimed(None)
"""A firing not claimed here (one shared instance: a thousand firings a second need no
thousand equal records)."""
Planned = tuple[int, "Firing", Claim]
"""A firing about to be claimed: its index in the call, the firing, its claim."""


@dataclass(frozen=True)
class Firing:
    """A firing before its claim: which job, for which time, why, which attempt.
    `skip_reason` marks one already decided not to run (e.g. missed in an outage)."""

    job: str
    scheduled_at: dt.datetime
    trigger: Trigger
    attempt: int = 1
    retry_of: int | None = None
    skip_reason: str | None = None
    stands_for: int = 1
    """How many firings a skipped one stands for (a gap's summary row)."""
    request: int | None = None
    """The trigger request of another node this manual firing answers, if any."""


def decide(
    firing: Firing, stored: StoredJob | None, now: float, token: str | None = None
) -> Claim | None:
    """The claim for `firing` given its job as it is now (None: deleted), or None when
    nothing is to be recorded (a scheduled firing of a job that is gone or paused does
    not exist). Applies, once: the job's state, `misfire_grace` for scheduled firings,
    and the concurrency policy (as flags the store acts on). `token`: see `Claim.token`."""

    def claim(skip_reason: str | None = None, job: Job | None = None) -> Claim:
        return Claim(
            firing.job, firing.scheduled_at, firing.trigger, firing.attempt, firing.retry_of,
            exclusive=job is not None and job.concurrency is Concurrency.FORBID,
            replace=job is not None and job.concurrency is Concurrency.REPLACE,
            skip_reason=skip_reason, token=token, request=firing.request,
        )  # fmt: skip

    if firing.skip_reason is not None:
        return claim(firing.skip_reason)
    inactive = _inactive(stored, firing.trigger)
    if inactive is not None:
        if firing.trigger in (Trigger.RETRY, Trigger.MANUAL):
            return claim(inactive)
        return None
    assert stored is not None
    job = stored.job
    late = now - firing.scheduled_at.timestamp()
    on_schedule = firing.trigger is Trigger.SCHEDULE and not job.schedule.is_reboot
    if on_schedule and late > job.misfire_grace:
        return claim(
            f"missed: it could be claimed only {late:.1f}s late "
            f"(misfire_grace {job.misfire_grace:g}s)"
        )
    return claim(job=job)


def _inactive(stored: StoredJob | None, trigger: Trigger) -> str | None:
    """Why the job cannot fire now, or None. A paused job may still be run by hand."""
    if stored is None:
        return "the job was deleted before this firing"
    if stored.paused and trigger is not Trigger.MANUAL:
        return "the job was paused before this firing"
    if not stored.job.enabled and trigger is not Trigger.MANUAL:
        return "the job was disabled before this firing"
    return None


def placed(firing: Firing, stored: StoredJob | None) -> bool:
    """Whether the firing goes to whichever node placement picks (scheduled firings and
    catch-ups), rather than to this node (manual runs, retries, a boot's firings)."""
    on_schedule = firing.trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP)
    return on_schedule and not (stored is not None and stored.job.schedule.is_reboot)


def release_time(firing: Firing, job: Job, rng: random.Random) -> float | None:
    """When a scheduled firing's command is let run (its time plus jitter); None for
    every other trigger: at once."""
    if firing.trigger is not Trigger.SCHEDULE or job.schedule.is_reboot:
        return None
    at = firing.scheduled_at.timestamp()
    return at + rng.uniform(0, job.jitter) if job.jitter else at


class FiringPath:
    """Decides, claims and launches firings; see the module text."""

    def __init__(
        self,
        store: Store,
        owner: str,
        launcher: Launcher,
        jobs: Callable[[str], StoredJob | None],
        clock: Clock,
        retry: RetryPolicy,
        cluster: Cluster,
    ) -> None:
        self._store = store
        self._owner = owner
        self._launcher = launcher
        self._jobs = jobs
        self._clock = clock
        self._retry = retry
        self._cluster = cluster
        self._rng = random.Random()
        self._abandoned: set[asyncio.Task[None]] = set()
        self.closed = False
        """Set once this process stops claiming (stopping or handed over)."""

    async def fire(
        self, firings: Sequence[Firing], crowded: Collection[dt.datetime] = ()
    ) -> list[Claimed]:
        """Decide, place, claim (one store call per turn) and launch `firings`; what
        became of each, in order (`Claimed(None)`: not claimed here). Firings due at an
        instant in `crowded` are so many that CPU bounds how soon they run (see
        `LaunchMode.DIRECT`). Once `closed`, only retries are claimed: their keys belong
        to this process's runs, nobody else claims them."""
        results = [_NOT_HERE] * len(firings)
        turns = self._plan(firings)
        started = self._clock.time()
        for delay in sorted(turns):
            if delay:  # a later place in the ranking: claim only if nobody did
                await self._clock.sleep(started + delay - self._clock.time())
            wanted = [p for p in turns[delay] if self._may_claim(p[1], late=delay > 0)]
            if not wanted:
                continue
            claims = [claim for _, _, claim in wanted]
            # Someone waits for a manual run: tell them the store is unavailable rather
            # than keep them waiting. Every other firing waits for the store.
            by_hand = all(firing.trigger is Trigger.MANUAL for _, firing, _ in wanted)
            outcomes = await persist(
                self._retry,
                f"claim of {len(wanted)} firing(s)",
                functools.partial(self._store.claim, claims, self._owner),
                give_up_after=MANUAL_PATIENCE if by_hand else None,
            )
            for (index, firing, claim), outcome in zip(wanted, outcomes, strict=True):
                results[index] = outcome
                self._act_on(firing, claim, outcome, firing.scheduled_at in crowded)
        return results

    def launch_claimed(self, firing: Firing, outcome: Claimed) -> None:
        """Launch a firing claimed for this node elsewhere (an `on_lost` retry, claimed
        in the transaction that marked the lost run)."""
        claim = Claim(firing.job, firing.scheduled_at, firing.trigger, firing.attempt)
        self._act_on(firing, claim, outcome, False)

    def _plan(self, firings: Sequence[Firing]) -> dict[float, list[Planned]]:
        """Each firing's claim, grouped by when this node tries it."""
        now = self._clock.time()
        running = len(self._launcher.running)
        turns: dict[float, list[Planned]] = {}
        # (See `Claim.token`.) One random name per call, numbered per firing: as unique
        # as a random name each, without a thousand calls to the system's randomness.
        call = uuid.uuid4().hex
        for index, firing in enumerate(firings):
            stored = self._jobs(firing.job)
            if not self._may_claim(firing, late=False):
                continue
            claim = decide(firing, stored, now, token=f"{call}.{index}")
            if claim is None:
                continue
            delay = 0.0
            if placed(firing, stored) and stored is not None:
                turn = self._cluster.turn(stored.job, firing.scheduled_at, firing.attempt, running)
                if turn is None:
                    continue
                delay = turn.delay
                if turn.skip_reason is not None and claim.skip_reason is None:
                    claim = replace(claim, skip_reason=turn.skip_reason)
            elif stored is not None and not self._cluster.fits(stored.job):
                if firing.trigger is not Trigger.MANUAL:
                    continue  # a boot of this node: not its to run
                claim = replace(claim, skip_reason=self._not_here(stored.job))
            if claim.skip_reason is None and delay == 0:
                running += 1
            turns.setdefault(delay, []).append((index, firing, claim))
        return turns

    def _may_claim(self, firing: Firing, late: bool) -> bool:
        """Whether this node claims `firing` now: not once closed (but for retries), never
        without a healthy lease, scheduled firings not while drained; a later turn not
        when the node has since reached its `max_running`."""
        if self.closed and firing.trigger is not Trigger.RETRY:
            return False
        if not self._cluster.healthy():
            return False
        if self._cluster.drained and firing.trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
            return False
        limit = self._cluster.me.max_running
        full = limit is not None and len(self._launcher.running) >= limit
        return not (late and full and firing.skip_reason is None)

    def _abandon(self, run_id: int, fence: int | None) -> None:
        end = RunEnd(
            RunStatus.SKIPPED,
            dt.datetime.fromtimestamp(self._clock.time(), dt.UTC),
            error="not started: this node's lease lapsed before it could start it",
        )
        task = asyncio.get_running_loop().create_task(self._end(run_id, end, fence))
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    async def _end(self, run_id: int, end: RunEnd, fence: int | None) -> None:
        await persist(
            self._retry, f"end of run {run_id}", lambda: self._store.finish(run_id, end, fence)
        )

    def _not_here(self, job: Job) -> str:
        tags = sorted(set(job.run_on) - set(self._cluster.me.tags))
        able = ", ".join(self._cluster.live_with(job.run_on)) or "none alive and taking work"
        return (
            f"run_on: this node ({self._cluster.me.name}) lacks the tag(s) {', '.join(tags)}; "
            f"nodes that have them: {able}"
        )

    def _act_on(self, firing: Firing, claim: Claim, outcome: Claimed, crowded: bool) -> None:
        if outcome.run_id is None:
            return  # another process owns this firing
        if outcome.status is RunStatus.SKIPPED:
            observer = self._launcher.observer
            if (outcome.error or "").startswith("missed"):
                late = self._clock.time() - claim.scheduled_at.timestamp()
                self._launcher.lag.missed(firing.job, late, firing.stands_for)
                observer.firings_missed(firing.job, firing.stands_for)
            at = dt.datetime.fromtimestamp(self._clock.time(), dt.UTC)
            observer.run_ended(
                RunEnded(firing.job, outcome.run_id, firing.trigger, outcome.status, at)
            )
            return
        if not self._cluster.healthy():
            # The claim waited for a store that came back after this node's lease
            # lapsed: its runs may be reaped any moment, so this one does not start.
            self._abandon(outcome.run_id, outcome.fence)
            return
        stored = self._jobs(firing.job)
        assert stored is not None  # decide() claimed nothing running for a missing job
        for other in outcome.replaced:
            self._launcher.kill(other)  # (another process's are asked through the store)
        job = stored.job
        # A crowded instant's shell-free start has no cgroup: only the default cap on
        # processes is given up for it (a job's own limits keep the usual start).
        crowded = crowded and not own_limits(job)
        node = self._cluster.me.name
        command = command_for(
            job,
            outcome.run_id,
            firing.scheduled_at,
            firing.attempt,
            tracking="session" if crowded else "auto",
            owner=self._owner,
            node=node,
            fence=outcome.fence,
        )
        release_at = release_time(firing, job, self._rng)
        mode = launch_mode(command, release_at, self._clock.time(), crowded)
        if crowded and mode is not LaunchMode.DIRECT:  # (rare: a command line that needs a shell)
            command = command_for(
                job, outcome.run_id, firing.scheduled_at, firing.attempt, owner=self._owner,
                node=node, fence=outcome.fence,
            )  # fmt: skip
        self._launcher.launch(
            Launch(
                outcome.run_id,
                job,
                firing.scheduled_at,
                firing.trigger,
                command,
                mode,
                release_at,
                firing.attempt,
                firing.retry_of,
                outcome.fence,
            )
        )
