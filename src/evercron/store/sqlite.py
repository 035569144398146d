"""The embedded store: `Store` on one SQLite file, for a single node.

Every call goes to the store's own thread (`StoreWorker`), which groups the writes queued
meanwhile into one transaction; the SQL itself is `SqliteDatabase`'s (with the outbox's in
`SqliteOutbox` and the metric totals' in `SqliteTotals`).

One node uses the file, so the node calls of the protocol are trivial: the node is what
this process said at `join`, always alive (a dead daemon process's runs are found through
its lock file instead, `evercron.daemon.lost`), nothing is reaped and no other node ever
sends a hint.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path

from evercron.model import Job, Run, RunStatus
from evercron.store.records import (
    BrokenJob,
    Claim,
    Claimed,
    Delivery,
    DeliveryState,
    Disagreement,
    EventPolicy,
    FanOut,
    JobSchedule,
    LostRun,
    MadeDelivery,
    Node,
    NodeInfo,
    NodeState,
    OutboxEvent,
    RunEnd,
    RunMark,
    RunningRun,
    RunQuery,
    StoredChunk,
    StoredJob,
    Total,
    TriggerRequest,
)
from evercron.store.schema import MIGRATIONS, Migration
from evercron.store.sqlite_database import SqliteDatabase
from evercron.store.sqlite_outbox import SqliteOutbox
from evercron.store.sqlite_totals import SqliteTotals
from evercron.store.worker import CallBatch, StoreWorker

log = logging.getLogger("evercron.store")
_Start = tuple[int, int | None, int | None, dt.datetime, Sequence[str]]
"""A `mark_started` call's arguments."""


class SqliteStore:
    """The `Store` of one SQLite file (see `evercron.store.api` for every promise).
    `node` names the one node that uses it: its runs carry it."""

    def __init__(self, path: str | Path, node: str | None = None) -> None:
        self.path = Path(path)
        self.node = node
        self._database = SqliteDatabase(self.path, node)
        self._outbox = SqliteOutbox(self._database)
        self._totals = SqliteTotals(self._database)
        self._worker = StoreWorker(self._database)
        # Every run writes its start and its result: a few milliseconds' worth travel
        # together (`BATCH_DELAY`).
        self._starts = CallBatch(self._worker, self._mark_started, write=True)
        self._ends = CallBatch(self._worker, self._finish, write=True)
        self._reported: set[BrokenJob] = set()  # broken job rows already logged
        self._node: NodeInfo | None = None
        self._drained = False

    @property
    def description(self) -> str:
        """The database file."""
        return f"sqlite {self.path}"

    @property
    def shared(self) -> bool:
        """A file one node uses: no."""
        return False

    async def migrate(
        self, *, expand_only: bool = False, migrations: Sequence[Migration] = MIGRATIONS
    ) -> int:
        """See `Store.migrate` (`migrations` lets tests try other schemas)."""
        return await self._worker.call(self._database.migrate, expand_only, migrations, write=True)

    async def close(self) -> None:
        """See `Store.close`."""
        self._starts.flush()
        self._ends.flush()
        self._worker.close()
        self._database.close()

    # -- jobs ------------------------------------------------------------------------

    async def list_jobs(self) -> list[StoredJob]:
        """See `Store.list_jobs`; each row that does not read as a job is logged, once."""
        rows = await self._worker.call(self._database.job_rows, write=False)
        for row in rows:
            if isinstance(row, BrokenJob) and row not in self._reported:
                self._reported.add(row)
                log.warning("job %s left out of listings: %s", row.name, row.error)
        return [row for row in rows if isinstance(row, StoredJob)]

    async def broken_jobs(self) -> list[BrokenJob]:
        """See `Store.broken_jobs`."""
        rows = await self._worker.call(self._database.job_rows, write=False)
        return [row for row in rows if isinstance(row, BrokenJob)]

    async def get_job(self, name: str) -> StoredJob | None:
        """See `Store.get_job`."""
        rows = await self._worker.call(self._database.job_rows, name, write=False)
        return rows[0] if rows and isinstance(rows[0], StoredJob) else None

    async def create_job(self, job: Job, now: dt.datetime) -> bool:
        """See `Store.create_job`."""
        return await self._worker.call(self._database.create_job, job, now, write=True)

    async def put_job(self, job: Job, now: dt.datetime) -> bool:
        """See `Store.put_job`."""
        return await self._worker.call(self._database.put_job, job, now, write=True)

    async def update_job(self, job: Job, now: dt.datetime, was: dt.datetime) -> bool:
        """See `Store.update_job`."""
        return await self._worker.call(self._database.update_job, job, now, was, write=True)

    async def delete_job(self, name: str) -> bool:
        """See `Store.delete_job`."""
        return await self._worker.call(self._database.delete_job, name, write=True)

    async def set_paused(self, name: str, paused: bool) -> bool:
        """See `Store.set_paused`."""
        return await self._worker.call(self._database.set_paused, name, paused, write=True)

    async def reconcile_jobs(self, jobs: Sequence[Job], now: dt.datetime) -> list[str]:
        """See `Store.reconcile_jobs`."""
        return await self._worker.call(self._database.reconcile_jobs, jobs, now, write=True)

    async def job_schedules(self) -> list[JobSchedule]:
        """See `Store.job_schedules`."""
        return await self._worker.call(self._database.job_schedules, write=False)

    # -- firings and runs ------------------------------------------------------------

    async def claim(self, claims: Sequence[Claim], owner: str) -> list[Claimed]:
        """See `Store.claim`."""
        now = dt.datetime.now(dt.UTC)
        return await self._worker.call(self._outbox.claim, claims, owner, now, write=True)

    async def mark_started(
        self,
        run_id: int,
        pid: int | None,
        pid_start_ticks: int | None,
        started_at: dt.datetime,
        cgroups: Sequence[str] = (),
    ) -> None:
        """See `Store.mark_started`."""
        await self._starts.call((run_id, pid, pid_start_ticks, started_at, cgroups))

    def _mark_started(self, start: _Start) -> None:  # on the store's thread
        self._outbox.mark_started(*start)

    async def finish(self, run_id: int, end: RunEnd, fence: int | None = None) -> bool:
        """See `Store.finish`."""
        return await self._ends.call((run_id, end, fence))

    def _finish(self, end: tuple[int, RunEnd, int | None]) -> bool:  # on the store's thread
        return self._outbox.finish(*end)

    async def get_run(self, run_id: int) -> Run | None:
        """See `Store.get_run`."""
        return await self._worker.call(self._database.get_run, run_id, write=False)

    async def list_runs(self, query: RunQuery) -> list[Run]:
        """See `Store.list_runs`."""
        return await self._worker.call(self._database.list_runs, query, write=False)

    async def latest_runs(self, per_job: int) -> dict[str, list[RunMark]]:
        """See `Store.latest_runs`."""
        return await self._worker.call(self._database.latest_runs, per_job, write=False)

    async def job_counts(self) -> tuple[int, int]:
        """See `Store.job_counts`."""
        return await self._worker.call(self._database.job_counts, write=False)

    async def running(self, owner: str | None = None, node: str | None = None) -> list[RunningRun]:
        """See `Store.running` (one node: every run is its)."""
        return await self._worker.call(self._database.running, owner, write=False)

    async def recent_status_counts(self, last: int) -> dict[RunStatus, int]:
        """See `Store.recent_status_counts`."""
        return await self._worker.call(self._database.recent_status_counts, last, write=False)

    async def last_scheduled(self, job: str) -> dt.datetime | None:
        """See `Store.last_scheduled`."""
        return await self._worker.call(self._database.last_scheduled, job, write=False)

    async def request_kill(self, run_id: int, at: dt.datetime) -> bool:
        """See `Store.request_kill`."""
        return await self._worker.call(self._database.request_kill, run_id, at, write=True)

    async def request_trigger(self, job: str, at: dt.datetime) -> int:
        """See `Store.request_trigger`."""
        return await self._worker.call(self._database.request_trigger, job, at, write=True)

    async def open_trigger_requests(self, since: dt.datetime) -> list[TriggerRequest]:
        """See `Store.open_trigger_requests`."""
        return await self._worker.call(self._database.open_trigger_requests, since, write=False)

    async def trigger_request(self, request_id: int) -> TriggerRequest | None:
        """See `Store.trigger_request`."""
        return await self._worker.call(self._database.trigger_request, request_id, write=False)

    async def withdraw_trigger_request(self, request_id: int) -> bool:
        """See `Store.withdraw_trigger_request`."""
        return await self._worker.call(
            self._database.withdraw_trigger_request, request_id, write=True
        )

    async def kill_requests(self, owner: str) -> list[int]:
        """See `Store.kill_requests`."""
        return await self._worker.call(self._database.kill_requests, owner, write=False)

    async def boot_time(self, boot_id: str, booted_at: dt.datetime) -> dt.datetime:
        """See `Store.boot_time`."""
        return await self._worker.call(self._database.boot_time, boot_id, booted_at, write=True)

    # -- output ----------------------------------------------------------------------

    async def append_output(self, run_id: int, chunks: Iterable[StoredChunk]) -> None:
        """See `Store.append_output`."""
        await self._worker.call(self._database.append_output, run_id, list(chunks), write=True)

    async def read_output(
        self, run_id: int, after: int = -1, limit: int = 1000
    ) -> list[StoredChunk]:
        """See `Store.read_output`."""
        return await self._worker.call(
            self._database.read_output, run_id, after, limit, write=False
        )

    async def tail_start(self, run_id: int, tail_bytes: int) -> int:
        """See `Store.tail_start`."""
        return await self._worker.call(self._database.tail_start, run_id, tail_bytes, write=False)

    # -- the notification outbox -----------------------------------------------------

    async def want_events(self, policy: EventPolicy) -> None:
        """See `Store.want_events`."""
        # On the store's thread: the calls queued before it write what was wanted then.
        await self._worker.call(self._outbox.want_events, policy, write=False)

    async def add_overdue_event(self, run_id: int) -> bool:
        """See `Store.add_overdue_event`."""
        return await self._worker.call(self._outbox.add_overdue_event, run_id, write=True)

    async def undispatched_events(self, limit: int = 100) -> list[OutboxEvent]:
        """See `Store.undispatched_events`."""
        return await self._worker.call(self._outbox.undispatched_events, limit, write=False)

    async def dispatch_events(
        self, fan_outs: Sequence[FanOut], at: dt.datetime
    ) -> list[MadeDelivery]:
        """See `Store.dispatch_events`."""
        return await self._worker.call(self._outbox.dispatch_events, list(fan_outs), at, write=True)

    async def claim_deliveries(self, owner: str, lease: float, limit: int = 50) -> list[Delivery]:
        """See `Store.claim_deliveries`."""
        return await self._worker.call(
            self._outbox.claim_deliveries, owner, lease, limit, write=True
        )

    async def settle_delivery(
        self,
        delivery_id: int,
        owner: str,
        state: DeliveryState,
        *,
        outcome: str | None = None,
        error: str | None = None,
        retry_in: float | None = None,
    ) -> bool:
        """See `Store.settle_delivery`."""
        return await self._worker.call(
            self._outbox.settle_delivery,
            delivery_id,
            owner,
            state,
            outcome,
            error,
            retry_in,
            write=True,
        )

    async def list_deliveries(
        self, limit: int = 100, channel: str | None = None, state: DeliveryState | None = None
    ) -> list[Delivery]:
        """See `Store.list_deliveries`."""
        return await self._worker.call(
            self._outbox.list_deliveries, limit, channel, state, write=False
        )

    async def prune_notifications(self, older_than: dt.datetime) -> int:
        """See `Store.prune_notifications`."""
        return await self._worker.call(self._outbox.prune_notifications, older_than, write=True)

    # -- metric totals ---------------------------------------------------------------

    async def save_metric_totals(self, node: str, owner: str, totals: Mapping[str, Total]) -> None:
        """See `Store.save_metric_totals`."""
        await self._worker.call(self._totals.save, node, owner, dict(totals), write=True)

    async def metric_totals(self, node: str, exclude: Collection[str] = ()) -> dict[str, float]:
        """See `Store.metric_totals`."""
        return await self._worker.call(self._totals.totals, node, set(exclude), write=False)

    async def merged_metric_totals(self, node: str) -> dict[str, float]:
        """See `Store.merged_metric_totals`."""
        return await self._worker.call(self._totals.merged, node, write=False)

    async def compact_metric_totals(self, node: str, keep: Collection[str]) -> int:
        """See `Store.compact_metric_totals`."""
        return await self._worker.call(self._totals.compact, node, set(keep), write=True)

    # -- events and retention --------------------------------------------------------

    async def add_event(self, kind: str, detail: str, at: dt.datetime) -> None:
        """See `Store.add_event`."""
        await self._worker.call(self._database.add_event, kind, detail, at, write=True)

    async def prune(self, keep_per_job: int, older_than: dt.datetime) -> int:
        """See `Store.prune`."""
        return await self._worker.call(self._database.prune, keep_per_job, older_than, write=True)

    # -- the one node ----------------------------------------------------------------

    async def join(self, node: NodeInfo) -> None:
        """See `Store.join`."""
        self._node = node

    async def renew(self, node: NodeInfo) -> list[Node] | None:
        """See `Store.renew` (nothing to write: the node is always alive)."""
        return await self.nodes()

    async def nodes(self) -> list[Node]:
        """See `Store.nodes`: the node that joined, alive (or draining)."""
        if self._node is None:
            return []
        info = self._node
        running = tuple(r.run.id for r in await self.running())
        state = NodeState.DRAINING if self._drained else NodeState.ALIVE
        now = dt.datetime.now(dt.UTC)
        return [
            Node(info.name, info.tags, state, now, info.version, info.pid, running, info.lease,
                 info.max_running)
        ]  # fmt: skip

    async def set_drained(self, name: str, drained: bool) -> bool:
        """See `Store.set_drained`."""
        if self._node is None or name != self._node.name:
            return False
        self._drained = drained
        return True

    async def leave(self, node: NodeInfo) -> bool:
        """See `Store.leave` (nobody else would see it)."""
        return True

    async def reap(self, grace: float, retryable: Mapping[str, int], owner: str) -> list[LostRun]:
        """See `Store.reap`: one node, never expired."""
        return []

    async def disagreements(self) -> list[Disagreement]:
        """See `Store.disagreements`: one node's files are the only ones."""
        return []

    async def listen(self, on_hint: Callable[[str, str], None]) -> None:
        """See `Store.listen`: nobody else announces anything."""
        on_hint("resync", "")
        await asyncio.Event().wait()
