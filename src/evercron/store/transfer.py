"""Moving a single node's SQLite history into a PostgreSQL database (`migrate-store`).

Jobs (with their paused flag), runs and their output are copied; a run still marked
running (its daemon is stopped: the command is gone) arrives `lost`. Into an empty
database run ids are kept as they are; merged into one that holds runs already, each
run gets a new id (and retries point at their originals' new ids).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from evercron.model import Run, RunStatus
from evercron.store.api import Store
from evercron.store.postgres import PostgresStore
from evercron.store.records import RunQuery, StoreError
from evercron.store.sqlite import SqliteStore

Progress = Callable[[str, int, int], None]
"""Called with (what, done, total) as the copy goes."""
_PAGE = 500


@dataclass(frozen=True)
class Transferred:
    """What a transfer copied."""

    jobs: int
    jobs_kept: int
    """Jobs the database already had under the same name (merging): theirs stay."""
    runs: int
    chunks: int
    target: str
    """The database, without its password."""


async def move_history(
    database_file: Path, url: str, merge: bool, progress: Progress
) -> Transferred:
    """Copy the SQLite store `database_file` into the PostgreSQL database at `url`."""
    source, target = SqliteStore(database_file), PostgresStore(url)
    try:
        await source.migrate()
        return await transfer(source, target, merge, progress)
    finally:
        await source.close()
        await target.close()


async def transfer(
    source: Store, target: PostgresStore, merge: bool, progress: Progress
) -> Transferred:
    """Copy `source` into `target` (see the module text). Raises `StoreError` when the
    database already holds jobs and `merge` is not set."""
    await target.migrate()
    present = {stored.job.name for stored in await target.list_jobs()}
    if present and not merge:
        raise StoreError(
            f"{target.description} already holds {len(present)} job(s): pass --merge to "
            "add this history to it (jobs of the same name keep the database's definition)"
        )
    jobs = await source.list_jobs()
    now = dt.datetime.now(dt.UTC)
    for done, stored in enumerate(jobs, start=1):
        if stored.job.name not in present:
            await target.create_job(stored.job, stored.created_at)
            if stored.paused:
                await target.set_paused(stored.job.name, True)
        progress("jobs", done, len(jobs))
    runs = await _every_run(source)
    keep_ids = not await target.list_runs(RunQuery(limit=1))
    new_ids: dict[int, int] = {}
    chunks = 0
    for done, found in enumerate(runs, start=1):
        run = found
        if run.status is RunStatus.RUNNING:
            run = replace(run, status=RunStatus.LOST, finished_at=now,
                          error="it was still marked running when the store was moved")  # fmt: skip
        new_ids[run.id] = await _insert_run(target, run, keep_ids, new_ids)
        chunks += await _copy_output(source, target, run.id, new_ids[run.id])
        if done % 100 == 0 or done == len(runs):
            progress("runs", done, len(runs))
    if keep_ids and runs:
        async with target.link.transaction() as conn:
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('runs', 'id'), (SELECT max(id) FROM runs))"
            )
    kept = sum(1 for stored in jobs if stored.job.name in present)
    return Transferred(len(jobs) - kept, kept, len(runs), chunks, target.description)


async def _every_run(source: Store) -> list[Run]:
    """Every run of `source`, oldest first."""
    found: list[Run] = []
    before: int | None = None
    while True:
        page = await source.list_runs(RunQuery(limit=_PAGE, before=before))
        found.extend(page)
        if len(page) < _PAGE:
            return found[::-1]
        before = page[-1].id


async def _insert_run(
    target: PostgresStore, run: Run, keep_id: bool, new_ids: dict[int, int]
) -> int:
    retry_of = run.retry_of if keep_id or run.retry_of is None else new_ids.get(run.retry_of)
    async with target.link.transaction() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO runs (id, job, trigger, scheduled_at, attempt, status, owner, node, "
                "started_at, finished_at, exit_code, signal, pid, cpu_user, cpu_system, "
                "max_rss_kb, output_bytes, output_truncated, error, retry_of) OVERRIDING "
                "SYSTEM VALUE VALUES (COALESCE(%s, nextval(pg_get_serial_sequence('runs', "
                "'id'))), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s) ON CONFLICT DO NOTHING RETURNING id",
                (
                    run.id if keep_id else None,
                    run.job,
                    str(run.trigger),
                    run.scheduled_at,
                    run.attempt,
                    str(run.status),
                    run.owner,
                    run.node,
                    run.started_at,
                    run.finished_at,
                    run.exit_code,
                    run.signal,
                    run.pid,
                    run.cpu_user,
                    run.cpu_system,
                    run.max_rss_kb,
                    run.output_bytes,
                    run.output_truncated,
                    run.error,
                    retry_of,
                ),
            )
        ).fetchone()
    if row is None:
        raise StoreError(
            f"run {run.id} ({run.job} at {run.scheduled_at.isoformat()}) is in the database "
            "already: was this history moved before?"
        )
    return int(row[0])


async def _copy_output(source: Store, target: PostgresStore, old: int, new: int) -> int:
    copied = 0
    after = -1
    while True:
        chunks = await source.read_output(old, after, _PAGE)
        if not chunks:
            return copied
        await target.append_output(new, chunks)
        copied += len(chunks)
        after = chunks[-1].offset
