"""Trigger requests on PostgreSQL: a manual run asked for through a node that cannot run
the job, answered by the first node that can (`TriggerRequest`).

A claim that answers a request locks the request's row first (`SELECT ... FOR UPDATE`):
of two nodes answering at once, the second waits, then finds it answered and claims
nothing. The answer and the run are written in one transaction, so a request is never
answered by a run that does not exist, nor by two.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from evercron.store.postgres_definitions import notify
from evercron.store.postgres_link import Connection
from evercron.store.records import TriggerRequest

_COLUMNS = "id, job, requested_at, by_node, run_id"


async def request_trigger(conn: Connection, job: str, at: dt.datetime, node: str | None) -> int:
    """Write a request and wake the listening nodes; its id."""
    cursor = await conn.execute(
        "INSERT INTO trigger_requests (job, requested_at, by_node) VALUES (%s, %s, %s) "
        "RETURNING id",
        (job, at, node),
    )
    row = await cursor.fetchone()
    assert row is not None
    await notify(conn, "trigger", str(row[0]))
    return int(row[0])


async def open_requests(conn: Connection, since: dt.datetime) -> list[TriggerRequest]:
    """The unanswered requests made from `since` on, oldest first."""
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM trigger_requests WHERE run_id IS NULL AND requested_at >= %s "
        "ORDER BY id",
        (since,),
    )
    return [_request(row) for row in await cursor.fetchall()]


async def one_request(conn: Connection, request_id: int) -> TriggerRequest | None:
    """A request as it is now."""
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM trigger_requests WHERE id = %s", (request_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else _request(row)


async def withdraw(conn: Connection, request_id: int) -> bool:
    """Remove a request; whether it was unanswered."""
    cursor = await conn.execute(
        "DELETE FROM trigger_requests WHERE id = %s RETURNING run_id", (request_id,)
    )
    row = await cursor.fetchone()
    return row is not None and row[0] is None


async def unanswered(conn: Connection, request_id: int, token: str | None) -> bool:
    """Lock a request for this transaction; whether it still waits for its run - or
    was answered by this very claim (`token`), whose answer was lost on the way back
    and which is being retried (it then finds its run by the token)."""
    cursor = await conn.execute(
        "SELECT t.run_id, r.claim_token FROM trigger_requests t "
        "LEFT JOIN runs r ON r.id = t.run_id WHERE t.id = %s FOR UPDATE OF t",
        (request_id,),
    )
    row = await cursor.fetchone()
    return row is not None and (row[0] is None or (token is not None and row[1] == token))


async def answer(conn: Connection, request_id: int, run_id: int | None) -> None:
    """Name the run that answered a request (locked by `unanswered`)."""
    await conn.execute(
        "UPDATE trigger_requests SET run_id = %s WHERE id = %s", (run_id, request_id)
    )


def _request(row: Any) -> TriggerRequest:
    return TriggerRequest(row[0], row[1], row[2], row[3], row[4])
