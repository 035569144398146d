"""The shared store: `Store` on one PostgreSQL database, for several nodes.

PostgreSQL is the only arbiter between the nodes: claims are decided by the occurrence
key (`evercron.store.postgres_claims`), `forbid` by a partial unique index, leases by the
database's clock (`evercron.store.postgres_nodes`). Every call is one transaction on a
pooled connection with a deadline (`evercron.store.postgres_link`). Changes other nodes
must hear of at once (definitions, kill requests, drains) are announced with NOTIFY in
the transaction that makes them: a hint only, since every node also polls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg

from evercron.model import Job, NotifyEvent, Run, RunStatus, Trigger
from evercron.store import postgres_nodes
from evercron.store import postgres_requests as requests
from evercron.store.postgres_batch import WriteBatcher
from evercron.store.postgres_claims import claim_all, claim_keyed, keyed_only
from evercron.store.postgres_definitions import (
    CHANNEL,
    JOB_COLUMNS,
    create_job,
    delete_job,
    disagreements,
    job_row,
    notify,
    put_job,
    reconcile,
    update_job,
)
from evercron.store.postgres_link import Connection, Link, cut
from evercron.store.postgres_outbox import OutboxCalls, record_results
from evercron.store.postgres_rows import RUN_COLUMNS, run_row, storable
from evercron.store.postgres_schema import MIGRATION_LOCK, MIGRATIONS, PRUNE_LOCK
from evercron.store.records import (
    BrokenJob,
    Claim,
    Claimed,
    Disagreement,
    EventPolicy,
    LostRun,
    Node,
    NodeInfo,
    RunEnd,
    RunMark,
    RunningRun,
    RunQuery,
    StoredChunk,
    StoredJob,
    StoreError,
    StoreUnavailable,
    TriggerRequest,
)
from evercron.store.schema import Migration

_SCHEDULED = [str(Trigger.SCHEDULE), str(Trigger.CATCH_UP)]
LISTEN_CHECK_EVERY = 5.0
"""Seconds between checks that the LISTEN connection still reaches the database."""
RECONCILE_TIMEOUT = 120.0
_UNSURE_KEPT = 100_000  # tokens of failed claims remembered for their retries
log = logging.getLogger("evercron.store")


class PostgresStore(OutboxCalls):
    """The `Store` of one PostgreSQL database (see `evercron.store.api` for every
    promise). `node` names the node this process belongs to: its claims carry it. The
    outbox and metric calls are `OutboxCalls`'."""

    def __init__(self, url: str, node: str | None = None) -> None:
        self.node = node
        self.link = Link(url)
        self.lease_link = Link(url, max_size=2, name="evercron-lease")
        """Renewals have connections of their own: a busy pool never delays them."""
        self.policy = EventPolicy()
        self.batch = WriteBatcher(self.link, lambda: self.policy)
        self._unsure: dict[str, None] = {}
        """Tokens of claims whose try failed without a known outcome (see `claim`)."""
        self._read: dict[tuple[Any, ...], StoredJob | BrokenJob] = {}
        """The last full listing's rows, read back (see `_job_rows`)."""

    @property
    def description(self) -> str:
        """The database, without its password."""
        return self.link.description

    @property
    def shared(self) -> bool:
        """A database several nodes use: yes."""
        return True

    async def migrate(
        self, *, expand_only: bool = False, migrations: Sequence[Migration] = MIGRATIONS
    ) -> int:
        """See `Store.migrate`: under the migration lock, so nodes starting together apply
        each migration once. A contract migration waits (is not applied) while a live
        node knows fewer migrations than it needs (a rolling upgrade under way)."""
        async with self.link.transaction(timeout=120) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, oldest_reader INTEGER NOT NULL)"
            )
            row = await _one(conn, "SELECT version, oldest_reader FROM schema_version")
            version, oldest = (int(row[0]), int(row[1])) if row else (0, 0)
            if oldest > len(migrations):
                raise StoreError(
                    f"the database {self.description} has schema {version}, newer than this "
                    f"evercron can read (it needs schema {oldest} or later; this one knows "
                    f"{len(migrations)}): upgrade evercron"
                )
            behind = await _oldest_live_schema(conn) if version else None
            applied = version
            for migration in migrations[version:]:
                too_soon = behind is not None and behind < migration.oldest_reader
                if migration.is_contract and (expand_only or too_soon):
                    break
                for statement in migration.statements():
                    await conn.execute(statement)
                applied += 1
                oldest = max(oldest, migration.oldest_reader)
            if row is None:
                await conn.execute("INSERT INTO schema_version VALUES (%s, %s)", (applied, oldest))
            elif applied != version:
                await conn.execute(
                    "UPDATE schema_version SET version = %s, oldest_reader = %s",
                    (applied, oldest),
                )
            return applied

    async def close(self) -> None:
        """See `Store.close`: queued writes first."""
        await self.batch.drain()
        await self.link.close()
        await self.lease_link.close()

    # -- jobs ------------------------------------------------------------------------

    async def list_jobs(self) -> list[StoredJob]:
        """See `Store.list_jobs`."""
        return [row for row in await self._job_rows() if isinstance(row, StoredJob)]

    async def broken_jobs(self) -> list[BrokenJob]:
        """See `Store.broken_jobs`."""
        return [row for row in await self._job_rows() if isinstance(row, BrokenJob)]

    async def get_job(self, name: str) -> StoredJob | None:
        """See `Store.get_job`."""
        rows = await self._job_rows(name)
        return rows[0] if rows and isinstance(rows[0], StoredJob) else None

    async def _job_rows(self, name: str | None = None) -> list[StoredJob | BrokenJob]:
        async with self.link.connection() as conn:
            if name is None:
                cursor = await conn.execute(
                    f'SELECT {JOB_COLUMNS} FROM jobs ORDER BY name COLLATE "C"'
                )
                # Every node re-reads every job every few seconds (the resync behind
                # lost hints): a row unchanged since the last listing is not parsed
                # again (a thousand jobs' cron parses, each time, on the event loop).
                read = {row: self._read.get(row) or job_row(row) for row in await cursor.fetchall()}
                self._read = read
                return list(read.values())
            cursor = await conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE name = %s", (name,))
            return [job_row(row) for row in await cursor.fetchall()]

    async def create_job(self, job: Job, now: dt.datetime) -> bool:
        """See `Store.create_job`."""
        async with self.link.transaction() as conn:
            return await create_job(conn, job, now, self.node)

    async def put_job(self, job: Job, now: dt.datetime) -> bool:
        """See `Store.put_job`."""
        async with self.link.transaction() as conn:
            return await put_job(conn, job, now, self.node)

    async def update_job(self, job: Job, now: dt.datetime, was: dt.datetime) -> bool:
        """See `Store.update_job`."""
        async with self.link.transaction() as conn:
            return await update_job(conn, job, now, was, self.node)

    async def delete_job(self, name: str) -> bool:
        """See `Store.delete_job`."""
        async with self.link.transaction() as conn:
            return await delete_job(conn, name)

    async def set_paused(self, name: str, paused: bool) -> bool:
        """See `Store.set_paused`."""
        async with self.link.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET paused = %s WHERE name = %s", (paused, name)
            )
            if cursor.rowcount:
                await notify(conn, "job", name)
            return cursor.rowcount > 0

    async def reconcile_jobs(self, jobs: Sequence[Job], now: dt.datetime) -> list[str]:
        """See `Store.reconcile_jobs` (a thousand jobs take a while: a longer deadline)."""
        async with self.link.transaction(timeout=RECONCILE_TIMEOUT) as conn:
            return await reconcile(conn, jobs, now, self.node or "")

    # -- firings and runs ------------------------------------------------------------

    async def claim(self, claims: Sequence[Claim], owner: str) -> list[Claimed]:
        """See `Store.claim` (`evercron.store.postgres_claims`): a call of keyed claims
        only (every busy second's) is one round trip, unless a claim answers a trigger
        request or its skipped firing makes a `missed` event (each written in the same
        transaction)."""
        if not claims:
            return []
        try:
            outcomes = await self._claim(claims, owner)
        except BaseException:  # its outcome is unknown: a retry must look for its rows
            self._unsure.update(dict.fromkeys(c.token for c in claims if c.token))
            while len(self._unsure) > _UNSURE_KEPT:
                del self._unsure[next(iter(self._unsure))]
            raise
        if self._unsure:
            for claim in claims:
                self._unsure.pop(claim.token or "", None)
        return outcomes

    async def _claim(self, claims: Sequence[Claim], owner: str) -> list[Claimed]:
        now = dt.datetime.now(dt.UTC)
        missed_events = NotifyEvent.MISSED in self.policy.events
        retried = self._unsure.keys()
        if all(_at_once(c, missed_events) for c in claims):
            async with self.link.connection() as conn:
                return await claim_keyed(
                    conn, claims, owner, self.node, now, self.link.timeout, retried
                )
        async with self.link.transaction() as conn:
            outcomes = await self._claim_answering(conn, claims, owner, now)
            if missed_events:
                skipped = [o.run_id for o in outcomes if o.run_id and o.status is RunStatus.SKIPPED]
                await record_results(conn, skipped, self.policy, now)
            return outcomes

    async def _claim_answering(
        self, conn: Connection, claims: Sequence[Claim], owner: str, now: dt.datetime
    ) -> list[Claimed]:
        """`claim_all`, leaving out each claim whose trigger request was answered or
        withdrawn meanwhile, and answering the others' requests with their runs."""
        retried = self._unsure.keys()
        if all(claim.request is None for claim in claims):
            return await claim_all(conn, claims, owner, self.node, now, retried)
        open_ = [
            c.request is None or await requests.unanswered(conn, c.request, c.token) for c in claims
        ]
        wanted = [claim for claim, is_open in zip(claims, open_, strict=True) if is_open]
        made = iter(await claim_all(conn, wanted, owner, self.node, now, retried))
        outcomes = [next(made) if is_open else Claimed(None) for is_open in open_]
        for claim, outcome in zip(claims, outcomes, strict=True):
            if claim.request is not None and outcome.run_id is not None:
                await requests.answer(conn, claim.request, outcome.run_id)
        return outcomes

    async def mark_started(
        self,
        run_id: int,
        pid: int | None,
        pid_start_ticks: int | None,
        started_at: dt.datetime,
        cgroups: Sequence[str] = (),
    ) -> None:
        """See `Store.mark_started` (committed in a group, `postgres_batch`)."""
        await self.batch.mark_started(run_id, pid, pid_start_ticks, started_at, cgroups)

    async def finish(self, run_id: int, end: RunEnd, fence: int | None = None) -> bool:
        """See `Store.finish` (committed in a group, `postgres_batch`). A retried call
        whose first try committed (its answer was lost with the connection) finds its
        own result and says True again."""
        return await self.batch.finish(run_id, end, fence)

    async def get_run(self, run_id: int) -> Run | None:
        """See `Store.get_run`."""
        async with self.link.connection() as conn:
            row = await _one(conn, f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,))
            return None if row is None else run_row(row)

    async def list_runs(self, query: RunQuery) -> list[Run]:
        """See `Store.list_runs`."""
        conditions = query.conditions()
        clauses = [f"{test} %s" for test, _ in conditions]
        values = [value for _, value in conditions]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self.link.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT %s",
                (*values, query.limit),
            )
            return [run_row(row) for row in await cursor.fetchall()]

    async def latest_runs(self, per_job: int) -> dict[str, list[RunMark]]:
        """See `Store.latest_runs` (one indexed read per job, in one statement)."""
        async with self.link.connection() as conn:
            cursor = await conn.execute(
                "SELECT j.name, r.id, r.status, r.scheduled_at, "
                "extract(epoch FROM r.finished_at - r.started_at) FROM jobs j "
                "LEFT JOIN LATERAL (SELECT id, status, scheduled_at, started_at, finished_at "
                "FROM runs WHERE runs.job = j.name ORDER BY id DESC LIMIT %s) r ON true "
                'ORDER BY j.name COLLATE "C", r.id DESC',
                (per_job,),
            )
            found: dict[str, list[RunMark]] = {}
            for name, run_id, status, at, seconds in await cursor.fetchall():
                marks = found.setdefault(name, [])
                if run_id is not None:
                    duration = None if seconds is None else float(seconds)
                    marks.append(RunMark(run_id, RunStatus(status), _utc(at), duration))
            return found

    async def job_counts(self) -> tuple[int, int]:
        """See `Store.job_counts`."""
        async with self.link.connection() as conn:
            row = await _one(conn, "SELECT count(*), count(*) FILTER (WHERE paused) FROM jobs")
            assert row is not None
            return int(row[0]), int(row[1])

    async def running(self, owner: str | None = None, node: str | None = None) -> list[RunningRun]:
        """See `Store.running`."""
        async with self.link.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {RUN_COLUMNS}, pid_start_ticks, cgroups FROM runs "
                "WHERE status = 'running' "
                "AND (%s::text IS NULL OR owner = %s::text) "
                "AND (%s::text IS NULL OR node = %s::text) ORDER BY id",
                (owner, owner, node, node),
            )
            return [
                RunningRun(
                    run_row(row[:-2]),
                    row[-2],
                    tuple((row[-1] or "").split("\n")) if row[-1] else (),
                )
                for row in await cursor.fetchall()
            ]

    async def last_scheduled(self, job: str) -> dt.datetime | None:
        """See `Store.last_scheduled`."""
        async with self.link.connection() as conn:
            row = await _one(
                conn,
                "SELECT max(scheduled_at) FROM runs WHERE job = %s AND trigger = ANY(%s)",
                (job, _SCHEDULED),
            )
            return None if row is None or row[0] is None else _utc(row[0])

    async def request_kill(self, run_id: int, at: dt.datetime) -> bool:
        """See `Store.request_kill`."""
        async with self.link.transaction() as conn:
            row = await _one(
                conn,
                "UPDATE runs SET kill_requested_at = %s WHERE id = %s AND status = 'running' "
                "RETURNING node",
                (at, run_id),
            )
            if row is not None:
                await notify(conn, "kill", f"{run_id} {row[0]}")
            return row is not None

    async def request_trigger(self, job: str, at: dt.datetime) -> int:
        """See `Store.request_trigger` (`evercron.store.postgres_requests`)."""
        async with self.link.transaction() as conn:
            return await requests.request_trigger(conn, job, at, self.node)

    async def open_trigger_requests(self, since: dt.datetime) -> list[TriggerRequest]:
        """See `Store.open_trigger_requests`."""
        async with self.link.connection() as conn:
            return await requests.open_requests(conn, since)

    async def trigger_request(self, request_id: int) -> TriggerRequest | None:
        """See `Store.trigger_request`."""
        async with self.link.connection() as conn:
            return await requests.one_request(conn, request_id)

    async def withdraw_trigger_request(self, request_id: int) -> bool:
        """See `Store.withdraw_trigger_request`."""
        async with self.link.transaction() as conn:
            return await requests.withdraw(conn, request_id)

    async def kill_requests(self, owner: str) -> list[int]:
        """See `Store.kill_requests`."""
        async with self.link.connection() as conn:
            # By node too when there is one: the runs_running index starts with it.
            mine = "owner = %s" if self.node is None else "node = %s AND owner = %s"
            cursor = await conn.execute(
                f"SELECT id FROM runs WHERE status = 'running' AND {mine} "
                "AND kill_requested_at IS NOT NULL ORDER BY id",
                (owner,) if self.node is None else (self.node, owner),
            )
            return [row[0] for row in await cursor.fetchall()]

    async def boot_time(self, boot_id: str, booted_at: dt.datetime) -> dt.datetime:
        """See `Store.boot_time`, per node: each node's boots are its own. Nodes of one
        machine share its boot time, and machines booted in the same second share it
        too, so each node's record is made unique (a microsecond later when taken):
        `@reboot` firings are keyed by it."""
        node = self.node or ""
        async with self.link.transaction() as conn:
            for step in range(10_000):
                mine = await _one(
                    conn,
                    "SELECT booted_at FROM boots WHERE boot_id = %s AND node = %s",
                    (boot_id, node),
                )
                if mine is not None:
                    return _utc(mine[0])
                await conn.execute(
                    "INSERT INTO boots (boot_id, node, booted_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (boot_id, node, booted_at + dt.timedelta(microseconds=step)),
                )
        raise StoreError(f"no free boot time near {booted_at.isoformat()}")

    # -- output ----------------------------------------------------------------------

    async def append_output(self, run_id: int, chunks: Iterable[StoredChunk]) -> None:
        """See `Store.append_output` (committed in a group, `postgres_batch`)."""
        batch = list(chunks)
        if batch:
            await self.batch.append_output(run_id, batch)

    async def read_output(
        self, run_id: int, after: int = -1, limit: int = 1000
    ) -> list[StoredChunk]:
        """See `Store.read_output`."""
        async with self.link.connection() as conn:
            cursor = await conn.execute(
                "SELECT byte_offset, stream, at, data FROM output WHERE run_id = %s "
                "AND byte_offset > %s ORDER BY byte_offset LIMIT %s",
                (run_id, after, limit),
            )
            return [StoredChunk(r[0], r[1], r[2], bytes(r[3])) for r in await cursor.fetchall()]

    async def tail_start(self, run_id: int, tail_bytes: int) -> int:
        """See `Store.tail_start`."""
        async with self.link.connection() as conn:
            last = await _one(
                conn,
                "SELECT byte_offset + length(data) FROM output WHERE run_id = %s "
                "ORDER BY byte_offset DESC LIMIT 1",
                (run_id,),
            )
            if last is None or last[0] <= tail_bytes:
                return 0
            row = await _one(
                conn,
                "SELECT byte_offset FROM output WHERE run_id = %s AND byte_offset <= %s "
                "ORDER BY byte_offset DESC LIMIT 1",
                (run_id, last[0] - tail_bytes),
            )
            return 0 if row is None else int(row[0])

    # -- events and retention --------------------------------------------------------

    async def add_event(self, kind: str, detail: str, at: dt.datetime) -> None:
        """See `Store.add_event`."""
        async with self.link.connection() as conn:
            await conn.execute(
                "INSERT INTO events (at, kind, detail) VALUES (%s, %s, %s)",
                (at, kind, storable(detail)),
            )

    async def prune(self, keep_per_job: int, older_than: dt.datetime) -> int:
        """See `Store.prune`: on one node at a time (another one pruning now: 0)."""
        async with self.link.transaction(timeout=300) as conn:
            locked = await _one(conn, "SELECT pg_try_advisory_xact_lock(%s)", (PRUNE_LOCK,))
            if not (locked and locked[0]):
                return 0
            cursor = await conn.execute(
                "SELECT id FROM (SELECT id, status, finished_at, row_number() OVER "
                "(PARTITION BY job ORDER BY id DESC) AS n FROM runs) AS ranked "
                "WHERE n > %s AND status <> 'running' AND finished_at < %s",
                (keep_per_job, older_than),
            )
            doomed = [row[0] for row in await cursor.fetchall()]
            await conn.execute("DELETE FROM output WHERE run_id = ANY(%s)", (doomed,))
            await conn.execute("DELETE FROM runs WHERE id = ANY(%s)", (doomed,))
            await conn.execute(
                "DELETE FROM trigger_requests WHERE requested_at < %s", (older_than,)
            )
            return len(doomed)

    # -- nodes -----------------------------------------------------------------------

    async def join(self, node: NodeInfo) -> None:
        """See `Store.join`. Renewals get a deadline of a third of the lease."""
        self.lease_link.timeout = node.lease / 3
        async with self.link.transaction() as conn:
            await postgres_nodes.join(conn, node, len(MIGRATIONS))

    async def renew(self, node: NodeInfo) -> list[Node] | None:
        """See `Store.renew`."""
        async with self.lease_link.connection() as conn:
            return await postgres_nodes.renew(conn, node)

    async def nodes(self) -> list[Node]:
        """See `Store.nodes`."""
        async with self.link.connection() as conn:
            return await postgres_nodes.nodes(conn)

    async def set_drained(self, name: str, drained: bool) -> bool:
        """See `Store.set_drained`."""
        async with self.link.transaction() as conn:
            return await postgres_nodes.set_drained(conn, name, drained)

    async def leave(self, node: NodeInfo) -> bool:
        """See `Store.leave`."""
        async with self.link.transaction() as conn:
            return await postgres_nodes.leave(conn, node)

    async def reap(self, grace: float, retryable: Mapping[str, int], owner: str) -> list[LostRun]:
        """See `Store.reap` (`evercron.store.postgres_nodes`)."""
        now = dt.datetime.now(dt.UTC)
        async with self.link.transaction() as conn:
            lost = await postgres_nodes.reap(conn, grace, retryable, owner, self.node, now)
            if NotifyEvent.LOST in self.policy.events:
                await record_results(conn, [r.run.id for r in lost], self.policy, now)
            return lost

    async def disagreements(self) -> list[Disagreement]:
        """See `Store.disagreements`."""
        async with self.link.connection() as conn:
            return await disagreements(conn)

    async def listen(self, on_hint: Callable[[str, str], None]) -> None:
        """See `Store.listen`: one connection of its own, checked every few seconds (a
        silent network would otherwise leave it waiting for hints forever); a new one,
        and a resync, after any trouble."""
        pause = 0.5
        while True:
            try:
                conn = await self.link.connect()
            except StoreUnavailable as error:
                log.debug("no LISTEN connection: %s", error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.5
            try:
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    on_hint("resync", "")
                    await self._hear(conn, on_hint)
            except psycopg.Error as error:
                log.debug("the LISTEN connection broke: %s", error)

    async def _hear(self, conn: Connection, on_hint: Callable[[str, str], None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async for note in conn.notifies(timeout=LISTEN_CHECK_EVERY):
                kind, _, detail = note.payload.partition(" ")
                on_hint(kind, detail)
            cutter = loop.call_later(self.link.timeout, cut, conn)
            try:
                await conn.execute("SELECT 1")
            finally:
                cutter.cancel()


# -- shared with the other modules of this backend --------------------------------------


async def _one(conn: Connection, sql: str, values: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    return await (await conn.execute(sql, values)).fetchone()


async def _oldest_live_schema(conn: Connection) -> int | None:
    """The fewest migrations a live node's release knows (None: no node is alive)."""
    row = await _one(
        conn,
        "SELECT min(schema_known) FROM nodes WHERE left_at IS NULL "
        "AND heartbeat_at + make_interval(secs => lease) > clock_timestamp()",
    )
    return None if row is None or row[0] is None else int(row[0])


def _at_once(claim: Claim, missed_events: bool) -> bool:
    """Whether a claim can go in `claim_keyed`'s one round trip: nothing to write in its
    transaction but its row."""
    return (
        keyed_only(claim)
        and claim.request is None
        and not (missed_events and claim.skip_reason is not None)
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)
