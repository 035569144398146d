"""This daemon process as a node: join, renew the lease, fence itself, reap, listen, leave.

One loop wakes every `TICK` and, in this order:
1. fences this node when its lease is no longer healthy (`Cluster.healthy`): it claims
   nothing more and ends its running commands before the lease can expire, so nobody
   ever reaps a run that is still running here;
2. sends a renewal every third of the lease (sooner after a failed one), each in a task
   of its own so that a silent database never delays step 1;
3. reaps, every `REAP_EVERY`, the runs of nodes whose lease expired (`Store.reap`),
   counts them in this node's metrics (and wakes their `lost` notifications),
   starts the `on_lost` retries it claimed for itself;
4. answers, as often, the trigger requests of other nodes (`evercron.scheduler.requests`)
   - at once when hinted;
5. re-reads every job every `RESYNC_EVERY` (hints from other nodes are only hints).

Hints (`Store.listen`) make other nodes' changes felt at once: a job edited, paused or
deleted is reloaded, a drain takes effect, a resync follows every reconnection. With
one node (SQLite: a store nobody else writes to) the loop only keeps the lease, which
never fails: there is nothing to reap, answer or re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from evercron.model import OnLost
from evercron.scheduler import Scheduler
from evercron.scheduler.observer import RunEnded
from evercron.scheduler.placement import Cluster
from evercron.store import NodeInfo, Store, StoreError, StoreUnavailable

log = logging.getLogger("evercron.daemon")
TICK = 0.25
REAP_EVERY = 1.0
REAP_GRACE = 2.0
"""Seconds past a lease's end before its runs are reaped (clock rates differ a little)."""
RESYNC_EVERY = 5.0
RETRY_RENEWAL_AFTER = 0.5


class Membership:
    """This node's life in the cluster (see the module text)."""

    def __init__(
        self,
        store: Store,
        info: NodeInfo,
        cluster: Cluster,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.info = info
        self.cluster = cluster
        self._monotonic = monotonic
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._hints: set[asyncio.Task[None]] = set()
        self._last_try = self._last_reap = self._last_resync = 0.0
        self._failing_since: float | None = None
        self._fenced = False
        self._taken = False

    async def join(self) -> None:
        """Enter the cluster (raises `StoreError` when the name is taken elsewhere)."""
        sent = self._monotonic()
        await self.store.join(self.info)
        nodes = await self.store.renew(self.info)
        if nodes is None:
            raise StoreError(f'node name "{self.info.name}" was taken while joining')
        self.cluster.renewed(sent, nodes)
        self._last_try = sent

    async def leave(self) -> None:
        """Leave the cluster (a graceful stop whose runs have all ended)."""
        with contextlib.suppress(StoreError):
            if await self.store.leave(self.info):
                log.info("node %s left the cluster", self.info.name)

    def readiness(self) -> str | None:
        """Why this node should not be sent work now, or None."""
        if self._taken:
            return f'node name "{self.info.name}" is now another node\'s'
        if not self.cluster.healthy():
            return "no lease renewal in time: the database is unreachable or too slow"
        if self._failing_since is not None:
            return "the database is unreachable (renewing the lease failed)"
        return None

    async def run(self, scheduler: Scheduler) -> None:
        """The loop (see the module text); runs until cancelled."""
        listening = asyncio.create_task(self.store.listen(lambda *h: self._hint(scheduler, *h)))
        try:
            while True:
                self._check_fence(scheduler)
                now = self._monotonic()
                wait = self.cluster.period if self._failing_since is None else RETRY_RENEWAL_AFTER
                if now - self._last_try >= wait:
                    self._last_try = now
                    self._start("renew", functools.partial(self._renew, now))
                if self.store.shared:  # (else nobody else writes to the store)
                    self._look_at_the_others(scheduler, now)
                await asyncio.sleep(TICK)
        finally:
            listening.cancel()
            pending = [listening, *self._tasks.values(), *self._hints]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- the steps ---------------------------------------------------------------------

    def _look_at_the_others(self, scheduler: Scheduler, now: float) -> None:
        """Steps 3 to 5: what other nodes did or left behind."""
        if now - self._last_reap >= REAP_EVERY and self.cluster.healthy():
            self._last_reap = now
            self._start("reap", lambda: self._reap(scheduler))
            if len(self.cluster.live_with(())) > 1:  # (alone: nobody asks)
                self._start("answer", lambda: _quietly(scheduler.answer_trigger_requests()))
        if now - self._last_resync >= RESYNC_EVERY:
            self._last_resync = now
            self._start("resync", lambda: self._resync(scheduler))

    def _check_fence(self, scheduler: Scheduler) -> None:
        healthy = self.cluster.healthy()
        if healthy and self._fenced:
            self._fenced = False
            log.warning("node %s renewed its lease again: it claims firings again", self.info.name)
        elif not healthy and not self._fenced:
            self._fenced = True
            left = max(0.0, self.cluster.expires_in())
            reason = (
                f"self-fenced: node {self.info.name} could not renew its lease "
                f"({self.info.lease:g}s) in time"
            )
            ended = scheduler.launcher.fence(left, reason)
            log.error(
                "%s: it claims nothing and ends its %d running command(s) before its lease "
                "runs out in %.1fs",
                reason,
                ended,
                left,
            )

    async def _renew(self, sent: float) -> None:
        try:
            nodes = await self.store.renew(self.info)
        except StoreUnavailable as error:
            if self._failing_since is None:
                self._failing_since = sent
                log.error(
                    "cannot renew the lease of node %s: %s; retrying (it fences itself in %.1fs)",
                    self.info.name,
                    error,
                    max(0.0, self.cluster.fence_in()),
                )
            return
        if nodes is None:
            if not self._taken:
                log.error('node name "%s" now belongs to another node: fenced', self.info.name)
            self._taken = True
            return
        self._taken = False
        self.cluster.renewed(sent, nodes)
        if self._failing_since is not None:
            log.warning(
                "the lease of node %s is renewed again after %.1fs",
                self.info.name,
                self._monotonic() - self._failing_since,
            )
            self._failing_since = None

    async def _reap(self, scheduler: Scheduler) -> None:
        retryable = {
            name: stored.job.retries
            for name, stored in scheduler.jobs.items()
            if stored.job.on_lost is OnLost.RETRY
            and self.cluster.fits(stored.job)
            and not stored.paused
            and stored.job.enabled
        }
        with contextlib.suppress(StoreUnavailable):
            for lost in await self.store.reap(REAP_GRACE, retryable, scheduler.owner):
                run = lost.run
                log.warning(
                    "run %s of %s on node %s marked lost: its node stopped renewing its lease%s",
                    run.id,
                    run.job,
                    run.node,
                    f"; retried here as run {lost.retry.run_id}" if lost.retry else "",
                )
                if run.finished_at is not None:  # counted, and its events sent, here
                    ended = RunEnded(run.job, run.id, run.trigger, run.status, run.finished_at)
                    scheduler.launcher.observer.run_ended(ended)
                scheduler.launch_reaped(lost)

    async def _resync(self, scheduler: Scheduler) -> None:
        with contextlib.suppress(StoreUnavailable):
            await scheduler.resync()
            self.cluster.update(await self.store.nodes())

    def _hint(self, scheduler: Scheduler, kind: str, detail: str) -> None:
        if kind == "job":
            self._hinted(scheduler.reload(detail))
        elif kind == "node":
            self._hinted(self._look_at_nodes())
        elif kind == "resync":
            self._hinted(self._resync(scheduler))
        elif kind == "trigger":
            self._hinted(scheduler.answer_trigger_requests())

    async def _look_at_nodes(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            self.cluster.update(await self.store.nodes())

    # -- tasks -------------------------------------------------------------------------

    def _start(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run one step (`work()`) in the background unless the last one of its kind
        still runs (then nothing of it is made: no coroutine left unawaited)."""
        running = self._tasks.get(name)
        if running is not None and not running.done():
            return
        self._tasks[name] = asyncio.create_task(work())

    def _hinted(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(_quietly(work))
        self._hints.add(task)
        task.add_done_callback(self._hints.discard)


async def _quietly(work: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(StoreUnavailable):
        await work
