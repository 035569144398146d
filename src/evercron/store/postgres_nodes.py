"""Nodes, leases and reaping on PostgreSQL, judged on the database's clock.

A node's lease is its row's `heartbeat_at` (set from `clock_timestamp()` by each renewal)
plus its `lease`: one statement renews the node and with it every run it holds. A node's
own clock only decides when it wakes. A node whose lease ran out more than a grace ago
has its running runs marked `lost` by whichever node reaps first (`FOR UPDATE SKIP
LOCKED`: two reapers never mark one run twice); the next attempt of an `on_lost =
"retry"` job is claimed in the same transaction. After a database restart nothing is
reaped until a lease has passed since, so that live nodes renew first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from evercron.model import Run, RunStatus
from evercron.store.postgres_definitions import notify
from evercron.store.postgres_link import Connection
from evercron.store.postgres_rows import RUN_COLUMNS, run_row
from evercron.store.records import Claimed, LostRun, Node, NodeInfo, NodeState, StoreError

_STATE = (
    "CASE WHEN n.left_at IS NOT NULL THEN 'left' "
    "WHEN n.heartbeat_at + make_interval(secs => n.lease) < clock_timestamp() THEN 'expired' "
    "WHEN n.drained THEN 'draining' ELSE 'alive' END"
)
_NODES = (
    f"SELECT n.name, n.tags, {_STATE}, n.heartbeat_at, n.version, n.pid, "
    "ARRAY(SELECT r.id FROM runs r WHERE r.node = n.name AND r.status = 'running' "
    'ORDER BY r.id), n.lease, n.max_running FROM nodes n ORDER BY n.name COLLATE "C"'
)
_EXPIRED = (
    "greatest(n.heartbeat_at, pg_postmaster_start_time()) "
    "+ make_interval(secs => n.lease + %s) < clock_timestamp()"
)


async def join(conn: Connection, node: NodeInfo, schema_known: int) -> None:
    """See `Store.join`."""
    row = await (
        await conn.execute(
            f"SELECT n.home, n.pid, {_STATE} FROM nodes n WHERE n.name = %s FOR UPDATE",
            (node.name,),
        )
    ).fetchone()
    if row is not None and row[0] != node.home and row[2] in ("alive", "draining"):
        raise StoreError(
            f'node name "{node.name}" is in use by a live node elsewhere ({row[0]}, pid '
            f"{row[1]}): give this node another name (--node-name)"
        )
    await conn.execute(
        "INSERT INTO nodes (name, home, owner, tags, version, schema_known, pid, lease, "
        "max_running, joined_at, heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "clock_timestamp(), clock_timestamp()) ON CONFLICT (name) DO UPDATE SET "
        "home = excluded.home, owner = excluded.owner, tags = excluded.tags, "
        "version = excluded.version, schema_known = excluded.schema_known, pid = excluded.pid, "
        "lease = excluded.lease, max_running = excluded.max_running, "
        "joined_at = excluded.joined_at, heartbeat_at = excluded.heartbeat_at, left_at = NULL",
        (
            node.name,
            node.home,
            node.owner,
            list(node.tags),
            node.version,
            schema_known,
            node.pid,
            node.lease,
            node.max_running,
        ),
    )
    await notify(conn, "node", node.name)


async def renew(conn: Connection, node: NodeInfo) -> list[Node] | None:
    """See `Store.renew`."""
    cursor = await conn.execute(
        "UPDATE nodes SET heartbeat_at = clock_timestamp() WHERE name = %s AND home = %s",
        (node.name, node.home),
    )
    if not cursor.rowcount:
        return None
    return await nodes(conn)


async def nodes(conn: Connection) -> list[Node]:
    """See `Store.nodes`."""
    return [_node(row) for row in await (await conn.execute(_NODES)).fetchall()]


async def set_drained(conn: Connection, name: str, drained: bool) -> bool:
    """See `Store.set_drained`."""
    cursor = await conn.execute("UPDATE nodes SET drained = %s WHERE name = %s", (drained, name))
    if cursor.rowcount:
        await notify(conn, "node", name)
    return cursor.rowcount > 0


async def leave(conn: Connection, node: NodeInfo) -> bool:
    """See `Store.leave`."""
    cursor = await conn.execute(
        "UPDATE nodes SET left_at = clock_timestamp() WHERE name = %s AND owner = %s "
        "AND NOT EXISTS (SELECT 1 FROM runs WHERE node = %s AND status = 'running')",
        (node.name, node.owner, node.name),
    )
    if cursor.rowcount:
        await notify(conn, "node", node.name)
    return cursor.rowcount > 0


async def reap(
    conn: Connection,
    grace: float,
    retryable: Mapping[str, int],
    owner: str,
    reaper: str | None,
    now: dt.datetime,
) -> list[LostRun]:
    """See `Store.reap`."""
    cursor = await conn.execute(
        "WITH doomed AS (SELECT r.id, n.heartbeat_at FROM runs r JOIN nodes n "
        f"ON n.name = r.node WHERE r.status = 'running' AND {_EXPIRED} "
        "FOR UPDATE OF r SKIP LOCKED) "
        "UPDATE runs SET status = 'lost', finished_at = %s, error = 'lost: its node ' || "
        "runs.node || ' stopped renewing its lease (last renewal ' || "
        "to_char(doomed.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
        f"|| ')' FROM doomed WHERE runs.id = doomed.id RETURNING {_qualified()}, "
        "runs.exclusive",
        (grace, now),
    )
    lost: list[LostRun] = []
    for row in await cursor.fetchall():
        run = run_row(row[:-1])
        detail = f"run {run.id} of {run.job} on node {run.node}: {run.error}"
        await conn.execute(
            "INSERT INTO events (at, kind, detail) VALUES (%s, 'lost', %s)", (now, detail)
        )
        retries = retryable.get(run.job)
        retry = None
        if retries is not None and run.attempt <= retries:
            retry = await _claim_retry(conn, run, bool(row[-1]), owner, reaper)
        lost.append(LostRun(run, retry))
    return lost


async def _claim_retry(
    conn: Connection, run: Run, exclusive: bool, owner: str, reaper: str | None
) -> Claimed | None:
    row = await (
        await conn.execute(
            "INSERT INTO runs (job, trigger, scheduled_at, attempt, status, owner, node, "
            "retry_of, exclusive) VALUES (%s, 'retry', %s, %s, 'running', %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING id, fence",
            (
                run.job,
                run.scheduled_at,
                run.attempt + 1,
                owner,
                reaper,
                run.retry_of or run.id,
                exclusive,
            ),
        )
    ).fetchone()
    return None if row is None else Claimed(row[0], RunStatus.RUNNING, fence=row[1])


def _qualified() -> str:
    return ", ".join(f"runs.{column.strip()}" for column in RUN_COLUMNS.split(","))


def _node(row: tuple[Any, ...]) -> Node:
    name, tags, state, heartbeat_at, version, pid, running, lease, max_running = row
    return Node(
        name,
        tuple(tags),
        NodeState(state),
        heartbeat_at.astimezone(dt.UTC),
        version,
        pid,
        tuple(running),
        lease,
        max_running,
    )
