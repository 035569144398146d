"""Group commits for the PostgreSQL store's busiest writes: starts, results, output.

A thousand runs a second make two thousand small writes a second (a start and a result
each, plus their output). One round trip each through a pool would hold connections
for as long as the event loop is busy elsewhere, and past some load the pool runs dry and
everything waits. So these writes queue here, and one task writes whatever queued
meanwhile in one transaction of a few multi-row statements - as the SQLite store's
thread groups its writes. Each call's answer comes once its group committed; a group
that fails fails every call in it (`StoreUnavailable`: the callers retry, and every
statement here may be repeated without harm). A group that makes no notification event
needs no transaction (each statement stands alone, and any may be repeated): its
statements commit as they run, which spares a BEGIN and a COMMIT round trip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evercron.model import NotifyEvent
from evercron.store.postgres_link import Connection, Link
from evercron.store.postgres_outbox import may_make_events, record_results, record_run_event
from evercron.store.postgres_rows import storable
from evercron.store.records import EventPolicy, RunEnd, StoredChunk

_MAX_GROUP = 2000


@dataclass
class _Write:
    kind: str  # "start", "finish" or "output"
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


class WriteBatcher:
    """Queues writes and commits them in groups (see the module text), with the
    notification events `policy()` wants of them."""

    def __init__(self, link: Link, policy: Callable[[], EventPolicy]) -> None:
        self._link = link
        self._policy = policy
        self._queue: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None

    async def mark_started(
        self,
        run_id: int,
        pid: int | None,
        ticks: int | None,
        at: dt.datetime,
        cgroups: Sequence[str] = (),
    ) -> None:
        """See `Store.mark_started` (the cgroups one per line)."""
        await self._submit("start", (run_id, pid, ticks, at, "\n".join(cgroups) or None))

    async def finish(self, run_id: int, end: RunEnd, fence: int | None) -> bool:
        """See `Store.finish`."""
        done: bool = await self._submit("finish", (run_id, end, fence))
        return done

    async def append_output(self, run_id: int, chunks: list[StoredChunk]) -> None:
        """See `Store.append_output`."""
        await self._submit("output", (run_id, chunks))

    async def drain(self) -> None:
        """Return once every queued write is done."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _submit(self, kind: str, args: tuple[Any, ...]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(kind, args, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:_MAX_GROUP], self._queue[_MAX_GROUP:]
            policy = self._policy()
            connect = (
                self._link.transaction if _makes_events(group, policy) else self._link.connection
            )
            try:
                async with connect() as conn:
                    results = await _write(conn, group, policy)
            except Exception as error:
                for write in group:
                    if not write.future.done():
                        write.future.set_exception(error)
                continue
            for write, result in zip(group, results, strict=True):
                if not write.future.done():
                    write.future.set_result(result)


def _makes_events(group: list[_Write], policy: EventPolicy) -> bool:
    """Whether a write of the group may make a notification event (written in the same
    transaction as its fact)."""
    if not policy.events:
        return False
    started = NotifyEvent.STARTED in policy.events
    return any(
        (w.kind == "start" and started)
        or (w.kind == "finish" and may_make_events(w.args[1].status, policy))
        for w in group
    )


async def _write(conn: Connection, group: list[_Write], policy: EventPolicy) -> list[Any]:
    """Every write of the group, in three statements at most (and the events they make);
    each one's answer."""
    chunks = [(w.args[0], c) for w in group if w.kind == "output" for c in w.args[1]]
    if chunks:
        await conn.execute(
            "INSERT INTO output (run_id, byte_offset, stream, at, data) SELECT * FROM "
            "unnest(%s::bigint[], %s::bigint[], %s::text[], %s::float8[], %s::bytea[]) "
            "ON CONFLICT DO NOTHING",
            (
                [run_id for run_id, _ in chunks],
                [c.offset for _, c in chunks],
                [c.stream for _, c in chunks],
                [c.at for _, c in chunks],
                [c.data for _, c in chunks],
            ),
        )
    starts = [w.args for w in group if w.kind == "start"]
    if starts:
        await conn.execute(
            "UPDATE runs SET pid = s.pid, pid_start_ticks = s.ticks, started_at = s.at, "
            "cgroups = s.cgroups FROM unnest(%s::bigint[], %s::int[], %s::bigint[], "
            "%s::timestamptz[], %s::text[]) AS s(id, pid, ticks, at, cgroups) "
            "WHERE runs.id = s.id",
            tuple(list(column) for column in zip(*starts, strict=True)),
        )
        if NotifyEvent.STARTED in policy.events:
            for run_id, *_, at, _ in starts:
                await record_run_event(conn, run_id, NotifyEvent.STARTED, policy, at)
    finished = await _finish(conn, [w.args for w in group if w.kind == "finish"])
    ended = [w.args for w in group if w.kind == "finish" and finished.get(w.args[0])]
    for run_id, end, _ in ended:
        if may_make_events(end.status, policy):
            await record_results(conn, [run_id], policy, end.finished_at)
    return [finished.get(w.args[0], False) if w.kind == "finish" else None for w in group]


async def _finish(conn: Connection, ends: list[tuple[Any, ...]]) -> dict[int, bool]:
    """Record results (only while the run is running and has the fence); by run id,
    whether each was recorded - or had been, by an earlier try whose answer was lost."""
    if not ends:
        return {}
    rows: list[tuple[Any, ...]] = []
    for run_id, end, fence in ends:
        rows.append((run_id, fence, str(end.status), end.finished_at, end.started_at,
                     end.exit_code, end.signal, end.cpu_user, end.cpu_system, end.max_rss_kb,
                     end.output_bytes, end.output_truncated, storable(end.error)))  # fmt: skip
    columns = tuple(list(column) for column in zip(*rows, strict=True))
    cursor = await conn.execute(
        "UPDATE runs SET status = e.status, finished_at = e.finished_at, "
        "started_at = COALESCE(e.started_at, runs.started_at), exit_code = e.exit_code, "
        "signal = e.signal, cpu_user = e.cpu_user, cpu_system = e.cpu_system, "
        "max_rss_kb = e.max_rss_kb, output_bytes = e.output_bytes, "
        "output_truncated = e.output_truncated, error = COALESCE(e.error, runs.error) "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[], "
        "%s::timestamptz[], %s::int[], %s::text[], %s::float8[], %s::float8[], %s::bigint[], "
        "%s::bigint[], %s::bool[], %s::text[]) AS e(id, fence, status, finished_at, "
        "started_at, exit_code, signal, cpu_user, cpu_system, max_rss_kb, output_bytes, "
        "output_truncated, error) WHERE runs.id = e.id AND runs.status = 'running' "
        "AND (e.fence IS NULL OR runs.fence = e.fence) RETURNING runs.id",
        columns,
    )
    done = {row[0]: True for row in await cursor.fetchall()}
    others = [(run_id, end) for run_id, end, _ in ends if run_id not in done]
    if others:
        cursor = await conn.execute(
            "SELECT id, status, finished_at FROM runs WHERE id = ANY(%s)",
            ([run_id for run_id, _ in others],),
        )
        now = {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}
        for run_id, end in others:
            done[run_id] = now.get(run_id) == (str(end.status), end.finished_at)
    return done
