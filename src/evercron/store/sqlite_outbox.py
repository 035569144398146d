"""The SQLite store's notification outbox: events written in the transaction of the fact
they report, fanned out to one delivery per channel, claimed with an expiry and settled.

Private to `evercron.store.sqlite` (its worker thread makes every call); `Store` in
`evercron.store.api` documents every promise. Writes run inside the transaction the
worker opened; a call that writes more than one statement is a savepoint of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from evercron.model import OUTCOMES, NotifyEvent, RunStatus, Trigger, possible_events, result_events
from evercron.store.records import (
    Claim,
    Claimed,
    Delivery,
    DeliveryState,
    EventPolicy,
    FanOut,
    MadeDelivery,
    OutboxEvent,
    RunEnd,
    RunFacts,
)
from evercron.store.sqlite_database import SqliteDatabase, from_text, storable, to_text

_OUTCOMES = tuple(sorted(str(status) for status in OUTCOMES))
_FACT_COLUMNS = (
    "id, job, status, trigger, scheduled_at, attempt, started_at, finished_at, exit_code, "
    "signal, error"
)
_EVENT_COLUMNS = "e.id, e.kind, e.job, e.repeat, e.facts, e.node, e.created_at"
_DELIVERY_COLUMNS = (
    "d.id, d.channel, d.summary, d.state, d.attempts, d.created_at, d.next_at, d.sent_at, "
    f"d.last_error, d.outcome, {_EVENT_COLUMNS}"
)
_PENDING = str(DeliveryState.PENDING)


def may_make_events(status: RunStatus, wanted: frozenset[NotifyEvent]) -> bool:
    """Whether a run ending with `status` can make an event that is wanted (if not, no
    statement is added to its result's)."""
    return not possible_events(status).isdisjoint(wanted)


class SqliteOutbox:
    """The outbox's SQL on one `SqliteDatabase` (its thread only)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database
        self.policy = EventPolicy()

    def want_events(self, policy: EventPolicy) -> None:
        """See `Store.want_events`."""
        self.policy = policy

    # -- facts that make events -------------------------------------------------------

    def finish(self, run_id: int, end: RunEnd, fence: int | None = None) -> bool:
        """`SqliteDatabase.finish`, with the result's events."""
        if not may_make_events(end.status, self.policy.events):
            return self._database.finish(run_id, end, fence)  # one statement, as without
        with self._database.step() as db:
            if not self._database.finish(run_id, end, fence):
                return False
            self._record_result(db, run_id, to_text(end.finished_at))
            return True

    def claim(self, claims: Sequence[Claim], owner: str, now: dt.datetime) -> list[Claimed]:
        """`SqliteDatabase.claim`, with a `missed` event for each firing recorded skipped."""
        if NotifyEvent.MISSED not in self.policy.events:
            return self._database.claim(claims, owner, now)
        with self._database.step() as db:
            outcomes = self._database.claim(claims, owner, now)
            for outcome in outcomes:
                if outcome.run_id is not None and outcome.status is RunStatus.SKIPPED:
                    self._record_result(db, outcome.run_id, to_text(now))
            return outcomes

    def mark_started(
        self,
        run_id: int,
        pid: int | None,
        pid_start_ticks: int | None,
        started_at: dt.datetime,
        cgroups: Sequence[str] = (),
    ) -> None:
        """`SqliteDatabase.mark_started`, with the `started` event."""
        if NotifyEvent.STARTED not in self.policy.events:
            self._database.mark_started(run_id, pid, pid_start_ticks, started_at, cgroups)
            return
        with self._database.step() as db:
            self._database.mark_started(run_id, pid, pid_start_ticks, started_at, cgroups)
            self._record_run_event(db, run_id, NotifyEvent.STARTED, to_text(started_at))

    def add_overdue_event(self, run_id: int) -> bool:
        """See `Store.add_overdue_event`."""
        if NotifyEvent.OVERDUE not in self.policy.events:
            return False
        now = to_text(dt.datetime.now(dt.UTC))
        with self._database.step() as db:
            return self._record_run_event(db, run_id, NotifyEvent.OVERDUE, now)

    def _record_result(self, db: sqlite3.Connection, run_id: int, now: str) -> None:
        """Write the wanted events of a run that just ended (`model.result_events`)."""
        facts = _facts(db, run_id)
        if facts is None:
            return
        status = RunStatus(facts["status"])
        previous = None
        if status in OUTCOMES:
            row = db.execute(
                "SELECT status FROM runs WHERE job = ? AND id < ? AND status IN "
                f"({', '.join('?' * len(_OUTCOMES))}) ORDER BY id DESC LIMIT 1",
                (facts["job"], run_id, *_OUTCOMES),
            ).fetchone()
            previous = RunStatus(row[0]) if row else None
        policy = self.policy
        for fact in result_events(status, previous):
            if fact.event in policy.events and (policy.repeats or not fact.repeat):
                _insert_event(db, fact.event, facts, fact.repeat, policy.node, now)

    def _record_run_event(
        self, db: sqlite3.Connection, run_id: int, kind: NotifyEvent, now: str
    ) -> bool:
        """Write a `started` or `overdue` event of a running run, at most one per run."""
        facts = _facts(db, run_id)
        if facts is None or facts["status"] != RunStatus.RUNNING:
            return False
        return _insert_event(db, kind, facts, False, self.policy.node, now)

    # -- fan-out and delivery ----------------------------------------------------------

    def undispatched_events(self, limit: int) -> list[OutboxEvent]:
        """See `Store.undispatched_events`."""
        rows = self._database.connection.execute(
            f"SELECT {_EVENT_COLUMNS} FROM notify_events AS e WHERE dispatched = 0 "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [_event(row) for row in rows]

    def dispatch_events(self, fan_outs: Sequence[FanOut], at: dt.datetime) -> list[MadeDelivery]:
        """See `Store.dispatch_events`."""
        now = to_text(at)
        hour = to_text(at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0))
        made = []
        with self._database.step() as db:
            for fan_out in fan_outs:
                for quota in fan_out.channels:
                    counted = db.execute(
                        "SELECT COUNT(*) FROM notify_deliveries WHERE channel = ? AND hour = ? "
                        "AND state != ?",
                        (quota.name, hour, str(DeliveryState.SUPPRESSED)),
                    ).fetchone()[0]
                    over = counted > quota.max_per_hour
                    state = DeliveryState.SUPPRESSED if over else DeliveryState.PENDING
                    cursor = db.execute(
                        "INSERT INTO notify_deliveries (event_id, channel, summary, state, "
                        "hour, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (
                            fan_out.event_id,
                            quota.name,
                            int(counted == quota.max_per_hour),
                            str(state),
                            hour,
                            now,
                            now,
                        ),
                    )
                    if cursor.rowcount:
                        made.append(MadeDelivery(fan_out.event_id, quota.name, state))
                db.execute(
                    "UPDATE notify_events SET dispatched = 1 WHERE id = ?", (fan_out.event_id,)
                )
        return made

    def claim_deliveries(self, owner: str, lease: float, limit: int) -> list[Delivery]:
        """See `Store.claim_deliveries`."""
        moment = dt.datetime.now(dt.UTC)
        now, until = to_text(moment), to_text(moment + dt.timedelta(seconds=lease))
        with self._database.step() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "UPDATE notify_deliveries SET claimed_by = ?, claimed_until = ? WHERE id IN "
                    "(SELECT id FROM notify_deliveries WHERE state = ? AND next_at <= ? AND "
                    "(claimed_until IS NULL OR claimed_until <= ?) ORDER BY next_at, id "
                    "LIMIT ?) RETURNING id",
                    (owner, until, _PENDING, now, now, limit),
                )
            ]
            return self._deliveries(f"d.id IN ({', '.join('?' * len(ids))}) ORDER BY d.id", ids)

    def settle_delivery(
        self,
        delivery_id: int,
        owner: str,
        state: DeliveryState,
        outcome: str | None,
        error: str | None,
        retry_in: float | None,
    ) -> bool:
        """See `Store.settle_delivery`."""
        moment = dt.datetime.now(dt.UTC)
        next_at = None if retry_in is None else to_text(moment + dt.timedelta(seconds=retry_in))
        cursor = self._database.connection.execute(
            "UPDATE notify_deliveries SET state = ?, attempts = attempts + 1, "
            "outcome = COALESCE(?, outcome), last_error = COALESCE(?, last_error), "
            "next_at = COALESCE(?, next_at), sent_at = ?, claimed_by = NULL, "
            "claimed_until = NULL WHERE id = ? AND claimed_by = ? AND state = ?",
            (
                str(state),
                storable(outcome),
                storable(error),
                next_at,
                to_text(moment) if state is DeliveryState.SENT else None,
                delivery_id,
                owner,
                _PENDING,
            ),
        )
        return cursor.rowcount > 0

    def list_deliveries(
        self, limit: int, channel: str | None, state: DeliveryState | None
    ) -> list[Delivery]:
        """See `Store.list_deliveries`."""
        clauses, values = ["1"], []
        if channel is not None:
            clauses.append("d.channel = ?")
            values.append(channel)
        if state is not None:
            clauses.append("d.state = ?")
            values.append(str(state))
        where = " AND ".join(clauses) + " ORDER BY d.id DESC LIMIT ?"
        return self._deliveries(where, [*values, limit])

    def prune_notifications(self, older_than: dt.datetime) -> int:
        """See `Store.prune_notifications`."""
        cutoff = to_text(older_than)
        with self._database.step() as db:
            removed: int = db.execute(
                "DELETE FROM notify_deliveries WHERE state != ? AND created_at < ?",
                (_PENDING, cutoff),
            ).rowcount
            db.execute(
                "DELETE FROM notify_events WHERE created_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM notify_deliveries AS d WHERE d.event_id = notify_events.id)",
                (cutoff,),
            )
        return removed

    def _deliveries(self, where: str, values: Sequence[Any]) -> list[Delivery]:
        rows = self._database.connection.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM notify_deliveries AS d "
            f"JOIN notify_events AS e ON e.id = d.event_id WHERE {where}",
            tuple(values),
        ).fetchall()
        return [_delivery(row) for row in rows]


def _facts(db: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    row = db.execute(f"SELECT {_FACT_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    return dict(zip(_FACT_COLUMNS.split(", "), row, strict=True))


def _insert_event(
    db: sqlite3.Connection,
    kind: NotifyEvent,
    facts: dict[str, Any],
    repeat: bool,
    node: str | None,
    now: str,
) -> bool:
    cursor = db.execute(
        "INSERT INTO notify_events (kind, job, run_id, repeat, facts, node, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (str(kind), facts["job"], facts["id"], int(repeat), json.dumps(facts), node, now),
    )
    return cursor.rowcount > 0


def _event(row: Sequence[Any]) -> OutboxEvent:
    created = from_text(row[6])
    assert created is not None  # NOT NULL
    return OutboxEvent(
        id=row[0],
        kind=NotifyEvent(row[1]),
        job=row[2],
        repeat=bool(row[3]),
        run=_run_facts(json.loads(row[4])),
        node=row[5],
        created_at=created,
    )


def _run_facts(facts: dict[str, Any]) -> RunFacts:
    scheduled = from_text(facts["scheduled_at"])
    assert scheduled is not None  # NOT NULL in runs
    return RunFacts(
        id=facts["id"],
        status=RunStatus(facts["status"]),
        trigger=Trigger(facts["trigger"]),
        scheduled_at=scheduled,
        attempt=facts["attempt"],
        started_at=from_text(facts["started_at"]),
        finished_at=from_text(facts["finished_at"]),
        exit_code=facts["exit_code"],
        signal=facts["signal"],
        error=facts["error"],
    )


def _delivery(row: Sequence[Any]) -> Delivery:
    created, next_at = from_text(row[5]), from_text(row[6])
    assert created is not None and next_at is not None  # NOT NULL
    return Delivery(
        id=row[0],
        channel=row[1],
        summary=bool(row[2]),
        state=DeliveryState(row[3]),
        attempts=row[4],
        created_at=created,
        next_at=next_at,
        sent_at=from_text(row[7]),
        last_error=row[8],
        outcome=row[9],
        event=_event(row[10:]),
    )
