"""Job definitions from several nodes' files, on PostgreSQL.

Each node applies its config and crontab files at its start and with `evercron apply`;
nodes started with different files must not fight over the jobs. The rule:

- Each node's file definitions are recorded as its own (`node_jobs`).
- The definition applied last wins: applying writes each of the node's jobs that differs
  from the stored one (`applied_by` says whose it is).
- A job from files is removed only when no live node's files define it any more. When
  the node whose definition won drops a job another live node still defines, that node's
  definition takes over.
- Where a live node's files disagree with the stored definition, `disagreements` says so
  (`evercron status` shows it).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import Any

from evercron.model import Job, JobError
from evercron.store.postgres_link import Connection
from evercron.store.postgres_schema import MIGRATION_LOCK
from evercron.store.records import BrokenJob, Disagreement, StoredJob

log = logging.getLogger("evercron.store")
RECONCILE_LOCK = MIGRATION_LOCK + 2
CHANNEL = "evercron"
JOB_COLUMNS = "name, definition, source, paused, created_at, updated_at"
LIVE_NODE = (
    "n.left_at IS NULL AND n.heartbeat_at + make_interval(secs => n.lease) > clock_timestamp()"
)


async def reconcile(
    conn: Connection, jobs: Sequence[Job], now: dt.datetime, node: str
) -> list[str]:
    """Apply `jobs` as node `node`'s file definitions (see the module text); the names
    of the jobs added, changed or removed."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (RECONCILE_LOCK,))
    await conn.execute("DELETE FROM node_jobs WHERE node = %s", (node,))
    for job in jobs:
        await conn.execute(
            "INSERT INTO node_jobs (node, name, definition, source) VALUES (%s, %s, %s, %s)",
            (node, job.name, definition(job), job.source),
        )
    stored = {
        name: (text, source, applied_by)
        for name, text, source, applied_by in await (
            await conn.execute("SELECT name, definition, source, applied_by FROM jobs")
        ).fetchall()
    }
    changed: list[str] = []
    wanted = {job.name: job for job in jobs}
    for name, job in wanted.items():
        existing = stored.get(name)
        if existing is None:
            await put_job(conn, job, now, node)
            changed.append(name)
            continue
        text, source, applied_by = existing
        if source == "api":
            log.warning("config job %s replaces the API job of the same name", name)
        elif text == definition(job) and (source == job.source or applied_by != node):
            continue  # the same job (another node's copy of the file may be elsewhere)
        elif text != definition(job) and applied_by not in (None, node):
            log.warning("job %s: this node's definition replaces node %s's", name, applied_by)
        await put_job(conn, job, now, node)
        changed.append(name)
    for name, (_, source, applied_by) in stored.items():
        if source == "api" or name in wanted:
            continue
        others = await _defined_elsewhere(conn, name, node)
        if not others:
            await delete_job(conn, name)
            changed.append(name)
        elif applied_by in (None, node):
            other_node, text, other_source = others[0]
            theirs = _job(text, other_source)
            if theirs is not None:
                await put_job(conn, theirs, now, other_node)
                changed.append(name)
    return changed


async def disagreements(conn: Connection) -> list[Disagreement]:
    """Live nodes whose files define a job otherwise than the stored definition."""
    cursor = await conn.execute(
        "SELECT nj.name, nj.node, j.applied_by, j.name IS NULL FROM node_jobs nj "
        f"JOIN nodes n ON n.name = nj.node AND {LIVE_NODE} "
        "LEFT JOIN jobs j ON j.name = nj.name "
        "WHERE j.name IS NULL OR j.definition <> nj.definition "
        'ORDER BY nj.name COLLATE "C", nj.node COLLATE "C"'
    )
    return [
        Disagreement(name, node, None if missing else applied_by)
        for name, node, applied_by, missing in await cursor.fetchall()
    ]


async def _defined_elsewhere(conn: Connection, name: str, node: str) -> list[tuple[str, str, str]]:
    cursor = await conn.execute(
        "SELECT nj.node, nj.definition, nj.source FROM node_jobs nj "
        f"JOIN nodes n ON n.name = nj.node AND {LIVE_NODE} "
        'WHERE nj.name = %s AND nj.node <> %s ORDER BY nj.node COLLATE "C"',
        (name, node),
    )
    return [(row[0], row[1], row[2]) for row in await cursor.fetchall()]


def _job(text: str, source: str) -> Job | None:
    try:
        return Job.from_mapping(json.loads(text), source=source)
    except (JobError, ValueError, TypeError):
        return None


async def notify(conn: Connection, kind: str, detail: str) -> None:
    """Tell listening nodes, once this transaction commits, that `kind` changed."""
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{kind} {detail}"))


async def create_job(conn: Connection, job: Job, now: dt.datetime, node: str | None) -> bool:
    """Insert a job unless its name is taken."""
    cursor = await conn.execute(
        "INSERT INTO jobs (name, definition, source, created_at, updated_at, applied_by) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (job.name, definition(job), job.source, now, now, node),
    )
    if cursor.rowcount:
        await notify(conn, "job", job.name)
    return cursor.rowcount > 0


async def put_job(conn: Connection, job: Job, now: dt.datetime, node: str | None) -> bool:
    """Create or replace a job (keeping its paused flag); True when created."""
    cursor = await conn.execute(
        "UPDATE jobs SET definition = %s, source = %s, updated_at = %s, applied_by = %s "
        "WHERE name = %s",
        (definition(job), job.source, now, node, job.name),
    )
    if cursor.rowcount:
        await notify(conn, "job", job.name)
        return False
    return await create_job(conn, job, now, node)


async def update_job(
    conn: Connection, job: Job, now: dt.datetime, was: dt.datetime, node: str | None
) -> bool:
    """Replace a job's definition while it is unchanged since `was`; True when replaced."""
    cursor = await conn.execute(
        "UPDATE jobs SET definition = %s, source = %s, updated_at = %s, applied_by = %s "
        "WHERE name = %s AND updated_at = %s",
        (definition(job), job.source, now, node, job.name, was),
    )
    if cursor.rowcount:
        await notify(conn, "job", job.name)
    return cursor.rowcount > 0


async def delete_job(conn: Connection, name: str) -> bool:
    """Remove a job; True when it existed."""
    cursor = await conn.execute("DELETE FROM jobs WHERE name = %s", (name,))
    if cursor.rowcount:
        await notify(conn, "job", name)
    return cursor.rowcount > 0


def definition(job: Job) -> str:
    """A job's stored form (the same JSON as the SQLite store's)."""
    return json.dumps(job.to_mapping(), sort_keys=True)


def job_row(row: tuple[Any, ...]) -> StoredJob | BrokenJob:
    """A stored job row, read back as a job or as broken."""
    name, text, source, paused, created, updated = row
    try:
        job = Job.from_mapping(json.loads(text), source=source)
    except (JobError, ValueError, TypeError) as error:
        return BrokenJob(name, f"the stored definition cannot be read: {error}")
    return StoredJob(job, bool(paused), created.astimezone(dt.UTC), updated.astimezone(dt.UTC))
