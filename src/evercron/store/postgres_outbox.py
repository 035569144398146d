"""The PostgreSQL store's notification outbox and metric totals.

Events are written in the transaction of the fact they report (a result, a skipped
claim, a start, a run marked lost by a reaper), so both are stored or neither; each
event goes to each channel once, whichever node fans it out (a unique key on event and
channel); deliveries are claimed with an expiry on the database's clock (`FOR UPDATE SKIP
LOCKED`: two nodes never take the same one), so each is sent by one process at a time.
Metric totals are kept per node and daemon process, as in the SQLite store
(`evercron.store.sqlite_totals` says how they combine). `Store` documents the promises.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from evercron.model import OUTCOMES, NotifyEvent, RunStatus, Trigger, possible_events, result_events
from evercron.store.postgres_link import Connection, Link
from evercron.store.postgres_rows import storable
from evercron.store.records import (
    MERGED,
    Delivery,
    DeliveryState,
    EventPolicy,
    FanOut,
    JobSchedule,
    MadeDelivery,
    OutboxEvent,
    RunFacts,
    Total,
    TotalKind,
)

_OUTCOMES = sorted(str(status) for status in OUTCOMES)
_FACTS = (
    "id, job, status, trigger, scheduled_at, attempt, started_at, finished_at, exit_code, "
    "signal, error"
)
_EVENT = "e.id, e.kind, e.job, e.repeat, e.facts, e.node, e.created_at"
_DELIVERY = (
    "d.id, d.channel, d.summary, d.state, d.attempts, d.created_at, d.next_at, d.sent_at, "
    f"d.last_error, d.outcome, {_EVENT}"
)
_COMBINED = "CASE min(kind) WHEN 'max' THEN max(value) ELSE sum(value) END"


def may_make_events(status: RunStatus, policy: EventPolicy) -> bool:
    """Whether a run ending with `status` can make an event that is wanted."""
    return not possible_events(status).isdisjoint(policy.events)


# -- facts that make events ------------------------------------------------------------


async def record_results(
    conn: Connection, run_ids: Iterable[int], policy: EventPolicy, now: dt.datetime
) -> None:
    """Write the wanted events of runs that just ended (`model.result_events`)."""
    for run_id in run_ids:
        facts = await _facts(conn, run_id)
        if facts is None:
            continue
        status = RunStatus(facts["status"])
        if not may_make_events(status, policy):
            continue
        previous = None
        if status in OUTCOMES:
            row = await (
                await conn.execute(
                    "SELECT status FROM runs WHERE job = %s AND id < %s AND status = ANY(%s) "
                    "ORDER BY id DESC LIMIT 1",
                    (facts["job"], run_id, _OUTCOMES),
                )
            ).fetchone()
            previous = RunStatus(row[0]) if row else None
        for fact in result_events(status, previous):
            if fact.event in policy.events and (policy.repeats or not fact.repeat):
                await _insert_event(conn, fact.event, facts, fact.repeat, policy.node, now)


async def record_run_event(
    conn: Connection, run_id: int, kind: NotifyEvent, policy: EventPolicy, now: dt.datetime
) -> bool:
    """Write a `started` or `overdue` event of a running run, at most one per run."""
    facts = await _facts(conn, run_id)
    if facts is None or facts["status"] != RunStatus.RUNNING:
        return False
    return await _insert_event(conn, kind, facts, False, policy.node, now)


async def _facts(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = await (
        await conn.execute(f"SELECT {_FACTS} FROM runs WHERE id = %s", (run_id,))
    ).fetchone()
    if row is None:
        return None
    facts = dict(zip(_FACTS.split(", "), row, strict=True))
    for key in ("scheduled_at", "started_at", "finished_at"):
        if facts[key] is not None:
            facts[key] = facts[key].astimezone(dt.UTC).isoformat()
    return facts


async def _insert_event(
    conn: Connection,
    kind: NotifyEvent,
    facts: dict[str, Any],
    repeat: bool,
    node: str | None,
    now: dt.datetime,
) -> bool:
    cursor = await conn.execute(
        "INSERT INTO notify_events (kind, job, run_id, repeat, facts, node, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (str(kind), facts["job"], facts["id"], repeat, storable(json.dumps(facts)), node, now),
    )
    return cursor.rowcount > 0


# -- fan-out and delivery ----------------------------------------------------------------


async def undispatched_events(conn: Connection, limit: int) -> list[OutboxEvent]:
    """See `Store.undispatched_events`."""
    cursor = await conn.execute(
        f"SELECT {_EVENT} FROM notify_events AS e WHERE NOT dispatched ORDER BY id LIMIT %s",
        (limit,),
    )
    return [_event(row) for row in await cursor.fetchall()]


async def dispatch_events(
    conn: Connection, fan_outs: Sequence[FanOut], at: dt.datetime
) -> list[MadeDelivery]:
    """See `Store.dispatch_events` (inside the caller's transaction)."""
    hour = at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    made = []
    for fan_out in fan_outs:
        for quota in fan_out.channels:
            # One channel's hourly count is decided by one transaction at a time.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (quota.name,))
            counted = await (
                await conn.execute(
                    "SELECT count(*) FROM notify_deliveries WHERE channel = %s AND hour = %s "
                    "AND state <> 'suppressed'",
                    (quota.name, hour),
                )
            ).fetchone()
            count = int(counted[0]) if counted else 0
            state = (
                DeliveryState.SUPPRESSED if count > quota.max_per_hour else DeliveryState.PENDING
            )
            cursor = await conn.execute(
                "INSERT INTO notify_deliveries (event_id, channel, summary, state, hour, "
                "next_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (fan_out.event_id, quota.name, count == quota.max_per_hour, str(state), hour,
                 at, at),
            )  # fmt: skip
            if cursor.rowcount:
                made.append(MadeDelivery(fan_out.event_id, quota.name, state))
        await conn.execute(
            "UPDATE notify_events SET dispatched = true WHERE id = %s", (fan_out.event_id,)
        )
    return made


async def claim_deliveries(
    conn: Connection, owner: str, lease: float, limit: int
) -> list[Delivery]:
    """See `Store.claim_deliveries`: the expiry is on the database's clock."""
    cursor = await conn.execute(
        "UPDATE notify_deliveries SET claimed_by = %s, "
        "claimed_until = clock_timestamp() + make_interval(secs => %s) WHERE id IN "
        "(SELECT id FROM notify_deliveries WHERE state = 'pending' "
        "AND next_at <= clock_timestamp() AND (claimed_until IS NULL OR "
        "claimed_until <= clock_timestamp()) ORDER BY next_at, id LIMIT %s "
        "FOR UPDATE SKIP LOCKED) RETURNING id",
        (owner, lease, limit),
    )
    ids = [row[0] for row in await cursor.fetchall()]
    return await _deliveries(conn, "d.id = ANY(%s) ORDER BY d.id", [ids])


async def settle_delivery(
    conn: Connection,
    delivery_id: int,
    owner: str,
    state: DeliveryState,
    outcome: str | None,
    error: str | None,
    retry_in: float | None,
) -> bool:
    """See `Store.settle_delivery`."""
    cursor = await conn.execute(
        "UPDATE notify_deliveries SET state = %s, attempts = attempts + 1, "
        "outcome = COALESCE(%s, outcome), last_error = COALESCE(%s, last_error), "
        "next_at = COALESCE(clock_timestamp() + make_interval(secs => %s::float8), next_at), "
        "sent_at = CASE WHEN %s THEN clock_timestamp() END, claimed_by = NULL, "
        "claimed_until = NULL WHERE id = %s AND claimed_by = %s AND state = 'pending'",
        (str(state), storable(outcome), storable(error), retry_in,
         state is DeliveryState.SENT, delivery_id, owner),
    )  # fmt: skip
    return cursor.rowcount > 0


async def list_deliveries(
    conn: Connection, limit: int, channel: str | None, state: DeliveryState | None
) -> list[Delivery]:
    """See `Store.list_deliveries`."""
    return await _deliveries(
        conn,
        "(%s::text IS NULL OR d.channel = %s::text) AND (%s::text IS NULL OR d.state = "
        "%s::text) ORDER BY d.id DESC LIMIT %s",
        [channel, channel, state and str(state), state and str(state), limit],
    )


async def prune_notifications(conn: Connection, older_than: dt.datetime) -> int:
    """See `Store.prune_notifications`."""
    cursor = await conn.execute(
        "DELETE FROM notify_deliveries WHERE state <> 'pending' AND created_at < %s",
        (older_than,),
    )
    await conn.execute(
        "DELETE FROM notify_events WHERE created_at < %s AND NOT EXISTS "
        "(SELECT 1 FROM notify_deliveries AS d WHERE d.event_id = notify_events.id)",
        (older_than,),
    )
    return cursor.rowcount


async def _deliveries(conn: Connection, where: str, values: Sequence[Any]) -> list[Delivery]:
    cursor = await conn.execute(
        f"SELECT {_DELIVERY} FROM notify_deliveries AS d "
        f"JOIN notify_events AS e ON e.id = d.event_id WHERE {where}",
        tuple(values),
    )
    return [_delivery(row) for row in await cursor.fetchall()]


def _event(row: Sequence[Any]) -> OutboxEvent:
    return OutboxEvent(
        id=row[0],
        kind=NotifyEvent(row[1]),
        job=row[2],
        repeat=bool(row[3]),
        run=_run_facts(json.loads(row[4])),
        node=row[5],
        created_at=row[6].astimezone(dt.UTC),
    )


def _run_facts(facts: dict[str, Any]) -> RunFacts:
    def moment(key: str) -> dt.datetime | None:
        text = facts.get(key)
        return None if text is None else dt.datetime.fromisoformat(text)

    scheduled = moment("scheduled_at")
    assert scheduled is not None  # NOT NULL in runs
    return RunFacts(
        id=facts["id"],
        status=RunStatus(facts["status"]),
        trigger=Trigger(facts["trigger"]),
        scheduled_at=scheduled,
        attempt=facts["attempt"],
        started_at=moment("started_at"),
        finished_at=moment("finished_at"),
        exit_code=facts["exit_code"],
        signal=facts["signal"],
        error=facts["error"],
    )


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(
        id=row[0],
        channel=row[1],
        summary=bool(row[2]),
        state=DeliveryState(row[3]),
        attempts=row[4],
        created_at=row[5].astimezone(dt.UTC),
        next_at=row[6].astimezone(dt.UTC),
        sent_at=None if row[7] is None else row[7].astimezone(dt.UTC),
        last_error=row[8],
        outcome=row[9],
        event=_event(row[10:]),
    )


# -- metric totals -------------------------------------------------------------------------


async def save_totals(conn: Connection, node: str, owner: str, totals: Mapping[str, Total]) -> None:
    """See `Store.save_metric_totals`."""
    if not totals:
        return
    series = list(totals)
    await conn.execute(
        "INSERT INTO metric_totals (node, owner, series, kind, value) SELECT %s, %s, * FROM "
        "unnest(%s::text[], %s::text[], %s::float8[]) ON CONFLICT (node, owner, series) "
        "DO UPDATE SET value = excluded.value",
        (node, owner, series, [str(totals[s].kind) for s in series],
         [totals[s].value for s in series]),
    )  # fmt: skip


async def totals(conn: Connection, node: str, exclude: Collection[str]) -> dict[str, float]:
    """See `Store.metric_totals`."""
    cursor = await conn.execute(
        f"SELECT series, {_COMBINED} FROM metric_totals WHERE node = %s "
        "AND NOT (owner = ANY(%s)) GROUP BY series",
        (node, list(exclude)),
    )
    return {row[0]: float(row[1]) for row in await cursor.fetchall()}


async def merged(conn: Connection, node: str) -> dict[str, float]:
    """See `Store.merged_metric_totals`."""
    cursor = await conn.execute(
        "SELECT series, value FROM metric_totals WHERE node = %s AND owner = %s", (node, MERGED)
    )
    return {row[0]: float(row[1]) for row in await cursor.fetchall()}


async def compact(conn: Connection, node: str, keep: Collection[str]) -> int:
    """See `Store.compact_metric_totals` (inside the caller's transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"totals {node}",))
    cursor = await conn.execute(
        "SELECT DISTINCT owner FROM metric_totals WHERE node = %s AND owner <> %s",
        (node, MERGED),
    )
    gone = [row[0] for row in await cursor.fetchall() if row[0] not in keep]
    if not gone:
        return 0
    owners = [MERGED, *gone]
    cursor = await conn.execute(
        f"SELECT series, min(kind), {_COMBINED} FROM metric_totals WHERE node = %s "
        "AND owner = ANY(%s) GROUP BY series",
        (node, owners),
    )
    combined = {
        s: Total(TotalKind(kind), float(value)) for s, kind, value in await cursor.fetchall()
    }
    await conn.execute(
        "DELETE FROM metric_totals WHERE node = %s AND owner = ANY(%s)", (node, owners)
    )
    await save_totals(conn, node, MERGED, combined)
    return len(gone)


class OutboxCalls:
    """The outbox and metric calls of `PostgresStore` (a part of it: it provides `link`
    and `policy`)."""

    link: Link
    policy: EventPolicy

    async def want_events(self, policy: EventPolicy) -> None:
        """See `Store.want_events`."""
        self.policy = policy

    async def add_overdue_event(self, run_id: int) -> bool:
        """See `Store.add_overdue_event`."""
        if NotifyEvent.OVERDUE not in self.policy.events:
            return False
        async with self.link.transaction() as conn:
            now = dt.datetime.now(dt.UTC)
            return await record_run_event(conn, run_id, NotifyEvent.OVERDUE, self.policy, now)

    async def undispatched_events(self, limit: int = 100) -> list[OutboxEvent]:
        """See `Store.undispatched_events`."""
        async with self.link.connection() as conn:
            return await undispatched_events(conn, limit)

    async def dispatch_events(
        self, fan_outs: Sequence[FanOut], at: dt.datetime
    ) -> list[MadeDelivery]:
        """See `Store.dispatch_events`."""
        async with self.link.transaction() as conn:
            return await dispatch_events(conn, fan_outs, at)

    async def claim_deliveries(self, owner: str, lease: float, limit: int = 50) -> list[Delivery]:
        """See `Store.claim_deliveries`."""
        async with self.link.transaction() as conn:
            return await claim_deliveries(conn, owner, lease, limit)

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
        async with self.link.connection() as conn:
            return await settle_delivery(conn, delivery_id, owner, state, outcome, error, retry_in)

    async def list_deliveries(
        self, limit: int = 100, channel: str | None = None, state: DeliveryState | None = None
    ) -> list[Delivery]:
        """See `Store.list_deliveries`."""
        async with self.link.connection() as conn:
            return await list_deliveries(conn, limit, channel, state)

    async def prune_notifications(self, older_than: dt.datetime) -> int:
        """See `Store.prune_notifications`."""
        async with self.link.transaction() as conn:
            return await prune_notifications(conn, older_than)

    async def save_metric_totals(self, node: str, owner: str, totals: Mapping[str, Total]) -> None:
        """See `Store.save_metric_totals`."""
        async with self.link.connection() as conn:
            await save_totals(conn, node, owner, totals)

    async def metric_totals(self, node: str, exclude: Collection[str] = ()) -> dict[str, float]:
        """See `Store.metric_totals`."""
        async with self.link.connection() as conn:
            return await totals(conn, node, exclude)

    async def merged_metric_totals(self, node: str) -> dict[str, float]:
        """See `Store.merged_metric_totals`."""
        async with self.link.connection() as conn:
            return await merged(conn, node)

    async def compact_metric_totals(self, node: str, keep: Collection[str]) -> int:
        """See `Store.compact_metric_totals`."""
        async with self.link.transaction() as conn:
            return await compact(conn, node, keep)

    async def job_schedules(self) -> list[JobSchedule]:
        """See `Store.job_schedules`."""
        async with self.link.connection() as conn:
            cursor = await conn.execute(
                "SELECT name, definition::jsonb ->> 'schedule', definition::jsonb -> 'timezone', "
                'paused FROM jobs ORDER BY name COLLATE "C"'
            )
            found = []
            for name, schedule, zone, paused in await cursor.fetchall():
                if isinstance(schedule, str) and isinstance(zone, str | None):
                    found.append(JobSchedule(name, schedule, zone, bool(paused)))
            return found

    async def recent_status_counts(self, last: int) -> dict[RunStatus, int]:
        """See `Store.recent_status_counts`."""
        async with self.link.connection() as conn:
            cursor = await conn.execute(
                "SELECT status, count(*) FROM (SELECT status FROM runs ORDER BY id DESC "
                "LIMIT %s) AS recent GROUP BY status",
                (last,),
            )
            return {RunStatus(row[0]): int(row[1]) for row in await cursor.fetchall()}
