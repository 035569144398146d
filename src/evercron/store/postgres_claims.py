"""Claims on PostgreSQL: the occurrence key decides, the database enforces `forbid`.

A claim is `INSERT ... ON CONFLICT DO NOTHING RETURNING`: whoever inserts the row with the
key (job, scheduled_at, attempt) owns the firing, whichever node it is on. For
`concurrency = "forbid"` the partial unique index `runs_exclusive` (one running exclusive
run per job) is the guard: of two nodes claiming two firings of one job at once, one
insert wins and the other finds the conflict and records its firing `skipped`.

A claim whose commit reached the database but whose answer was lost (the connection broke
at that moment) is retried by its caller; the retry finds the row it wrote by the claim's
`token` and owns it again rather than losing the firing (or, for a manual run, which has
no key, rather than writing a second one). Another claim of the same firing - even by the
same process - has another token and finds the key taken, as it must. Only a retry
looks (`retried`): a first try that finds a key taken lost it to another claimer, and
with several nodes most tries are of firings another node claimed first.

Every busy second's claims need nothing but their keys (`keyed_only`): they go in one
statement, sent with its BEGIN and COMMIT in one round trip (`claim_keyed`), so that no
claim's rows stay uncommitted while its node's event loop is busy elsewhere - other
nodes claiming the same keys would wait for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from evercron.model import RunStatus, Trigger
from evercron.store.postgres_link import Connection
from evercron.store.postgres_rows import storable
from evercron.store.records import Claim, Claimed

_RUNNING = str(RunStatus.RUNNING)
_SKIPPED = str(RunStatus.SKIPPED)
_INSERT = (
    "INSERT INTO runs (job, trigger, scheduled_at, attempt, status, owner, node, finished_at, "
    "error, retry_of, exclusive, claim_token) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
)
_BULK_INSERT = (
    "INSERT INTO runs (job, trigger, scheduled_at, attempt, retry_of, claim_token, status, "
    "error, finished_at, owner, node) SELECT job, trigger, scheduled_at, attempt, retry_of, "
    "claim_token, status, error, CASE WHEN status = 'skipped' THEN %s::timestamptz END, %s, "
    "%s FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::int[], %s::bigint[], "
    "%s::text[], %s::text[], %s::text[]) AS c(job, trigger, scheduled_at, attempt, retry_of, "
    "claim_token, status, error) ORDER BY job, scheduled_at, attempt "
    "ON CONFLICT DO NOTHING RETURNING id, job, scheduled_at, attempt, status, error, fence"
)
Key = tuple[str, dt.datetime, int]


async def claim_all(
    conn: Connection,
    claims: Sequence[Claim],
    owner: str,
    node: str | None,
    now: dt.datetime,
    retried: Collection[str] = (),
) -> list[Claimed]:
    """Own or record each claim, in order, inside the caller's transaction: the keyed
    ones in one statement, the others one by one. `retried`: the tokens of claims tried
    before without a known outcome."""
    keyed = [claim for claim in claims if keyed_only(claim)]
    won: dict[Key, Claimed] = {}
    if keyed:
        cursor = await conn.execute(_BULK_INSERT, _bulk_values(keyed, owner, node, now))
        won = await _settle(conn, keyed, await cursor.fetchall(), retried)
    return [
        won.get(_key(claim), Claimed(None))
        if keyed_only(claim)
        else await _claim_one(conn, claim, owner, node, now)
        for claim in claims
    ]


async def claim_keyed(
    conn: Connection,
    claims: Sequence[Claim],
    owner: str,
    node: str | None,
    now: dt.datetime,
    deadline: float,
    retried: Collection[str] = (),
) -> list[Claimed]:
    """Keyed claims (`keyed_only`) on a connection in autocommit, in one round trip: the
    transaction is sent whole (begin, insert, commit), so its rows are committed as soon
    as the database gets to it, and another node claiming the same keys never waits for
    this node's event loop to get round to a COMMIT. The database gives the transaction
    at most half the caller's `deadline` (seconds): one the caller gave up on cannot
    commit later, unseen by its retry. `retried`: as for `claim_all`."""
    try:
        # (Not `conn.transaction()`: in a pipeline it waits for the answers before COMMIT.)
        async with conn.pipeline():
            await conn.execute("BEGIN")
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", (f"{int(deadline * 500)}ms",)
            )
            cursor = await conn.execute(_BULK_INSERT, _bulk_values(claims, owner, node, now))
            await conn.execute("COMMIT")
    except psycopg.Error:
        if conn.info.transaction_status is TransactionStatus.INERROR:
            with contextlib.suppress(psycopg.Error):  # (the pool drops a broken one)
                await conn.execute("ROLLBACK")
        raise
    won = await _settle(conn, claims, await cursor.fetchall(), retried)
    return [won.get(_key(c), Claimed(None)) for c in claims]


def keyed_only(claim: Claim) -> bool:
    """Whether a claim needs nothing but its key - a run to own or a firing to record
    `skipped` (the bulk of every busy second): no concurrency check, not a manual run."""
    return not (claim.exclusive or claim.replace or claim.trigger is Trigger.MANUAL)


def _bulk_values(
    claims: Sequence[Claim], owner: str, node: str | None, now: dt.datetime
) -> tuple[Any, ...]:
    """`_BULK_INSERT`'s values. Rows go in in key order: two nodes claiming overlapping
    firings at once then wait for each other in one order, never in a cycle (a
    deadlock)."""
    return (
        now,
        owner,
        node,
        [c.job for c in claims],
        [str(c.trigger) for c in claims],
        [c.scheduled_at for c in claims],
        [c.attempt for c in claims],
        [c.retry_of for c in claims],
        [c.token for c in claims],
        [_RUNNING if c.skip_reason is None else _SKIPPED for c in claims],
        [storable(c.skip_reason) for c in claims],
    )


async def _settle(
    conn: Connection,
    claims: Sequence[Claim],
    rows: list[tuple[Any, ...]],
    retried: Collection[str],
) -> dict[Key, Claimed]:
    """The outcome of each claim by key, from the rows the insert returned; a key it did
    not insert for a claim in `retried` is looked up (in a statement of its own, which
    sees what committed meanwhile): an earlier try of the same claim may hold it."""
    won: dict[Key, Claimed] = {
        (job, _utc(at), attempt): Claimed(run_id, RunStatus(status), error, fence=fence)
        for run_id, job, at, attempt, status, error, fence in rows
    }
    if not retried:
        return won
    lost = [c for c in claims if c.token in retried and _key(c) not in won]
    if lost:
        won.update(await _own_rows(conn, lost))
    return won


async def _claim_one(
    conn: Connection, claim: Claim, owner: str, node: str | None, now: dt.datetime
) -> Claimed:
    if claim.trigger is Trigger.MANUAL:
        again = await _own_manual(conn, claim)
        if again is not None:
            return again
    error = claim.skip_reason
    if error is None and claim.exclusive:
        blocker = await _running_of(conn, claim.job)
        if blocker is not None:
            error = _forbidden(blocker)
    if error is not None:
        return await _insert_skipped(conn, claim, owner, node, now, error)
    row = await (
        await conn.execute(
            _INSERT + "ON CONFLICT DO NOTHING RETURNING id, fence",
            _values(claim, owner, node, _RUNNING, None, None, claim.exclusive),
        )
    ).fetchone()
    if row is None:
        if await _key_taken(conn, claim):
            return (await _own_rows(conn, [claim])).get(_key(claim), Claimed(None))
        # The key is free: the conflict was runs_exclusive - another node's run started.
        blocker = await _running_of(conn, claim.job)
        reason = _forbidden(blocker) if blocker is not None else "concurrency=forbid"
        return await _insert_skipped(conn, claim, owner, node, now, reason)
    run_id, fence = row
    replaced: tuple[int, ...] = ()
    if claim.replace:
        asked = await conn.execute(
            "UPDATE runs SET kill_requested_at = %s WHERE job = %s AND status = 'running' "
            "AND id <> %s RETURNING id, node",
            (now, claim.job, run_id),
        )
        rows = await asked.fetchall()
        replaced = tuple(row[0] for row in rows)
        for other, other_node in rows:
            await conn.execute("SELECT pg_notify('evercron', %s)", (f"kill {other} {other_node}",))
    return Claimed(run_id, RunStatus.RUNNING, None, replaced, fence)


async def _insert_skipped(
    conn: Connection, claim: Claim, owner: str, node: str | None, now: dt.datetime, error: str
) -> Claimed:
    row = await (
        await conn.execute(
            _INSERT + "ON CONFLICT DO NOTHING RETURNING id, fence",
            _values(claim, owner, node, _SKIPPED, now, error, False),
        )
    ).fetchone()
    if row is None:
        return (await _own_rows(conn, [claim])).get(_key(claim), Claimed(None))
    return Claimed(row[0], RunStatus.SKIPPED, error, fence=row[1])


async def _own_rows(conn: Connection, claims: Sequence[Claim]) -> dict[Key, Claimed]:
    """Rows with these keys that these very claims wrote (by their tokens): an earlier
    try of the same claim call, committed though its answer was lost. Found by key (the
    claim index: one probe per key, whatever the planner thinks of the tokens); another
    claimer's row (the usual case) is passed over in the database."""
    mine = [c for c in claims if c.token is not None]
    if not mine:
        return {}
    rows = await (
        await conn.execute(
            "SELECT r.id, r.job, r.scheduled_at, r.attempt, r.status, r.error, r.fence "
            "FROM unnest(%s::text[], %s::timestamptz[], %s::int[], %s::text[]) AS "
            "k(job, scheduled_at, attempt, token) JOIN runs r ON r.job = k.job AND "
            "r.scheduled_at = k.scheduled_at AND r.attempt = k.attempt "
            "AND r.trigger <> 'manual' AND r.claim_token = k.token",
            (
                [c.job for c in mine],
                [c.scheduled_at for c in mine],
                [c.attempt for c in mine],
                [c.token for c in mine],
            ),
        )
    ).fetchall()
    return {
        (job, _utc(at), attempt): Claimed(run_id, RunStatus(status), error, fence=fence)
        for run_id, job, at, attempt, status, error, fence in rows
    }


async def _own_manual(conn: Connection, claim: Claim) -> Claimed | None:
    """The manual run an earlier try of this claim wrote, if any (by its token)."""
    if claim.token is None:
        return None
    row = await (
        await conn.execute(
            "SELECT id, status, error, fence FROM runs WHERE claim_token = %s", (claim.token,)
        )
    ).fetchone()
    return None if row is None else Claimed(row[0], RunStatus(row[1]), row[2], fence=row[3])


async def _key_taken(conn: Connection, claim: Claim) -> bool:
    row = await (
        await conn.execute(
            "SELECT 1 FROM runs WHERE job = %s AND scheduled_at = %s AND attempt = %s "
            "AND trigger <> 'manual'",
            (claim.job, claim.scheduled_at, claim.attempt),
        )
    ).fetchone()
    return row is not None


async def _running_of(conn: Connection, job: str) -> int | None:
    row = await (
        await conn.execute(
            "SELECT id FROM runs WHERE job = %s AND status = 'running' ORDER BY id LIMIT 1",
            (job,),
        )
    ).fetchone()
    return None if row is None else int(row[0])


def _forbidden(run_id: int) -> str:
    return f"concurrency=forbid: run {run_id} is still running"


def _values(
    claim: Claim,
    owner: str,
    node: str | None,
    status: str,
    finished_at: dt.datetime | None,
    error: str | None,
    exclusive: bool,
) -> tuple[Any, ...]:
    return (
        claim.job,
        str(claim.trigger),
        claim.scheduled_at,
        claim.attempt,
        status,
        owner,
        node,
        finished_at,
        storable(error),
        claim.retry_of,
        exclusive,
        claim.token,
    )


def _key(claim: Claim) -> Key:
    return (claim.job, _utc(claim.scheduled_at), claim.attempt)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)
