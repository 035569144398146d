"""The embedded store: one SQLite file in WAL mode.

Every method is a short transaction; the claim is a single INSERT guarded by the unique
index on (job, scheduled_at, attempt): whoever inserts the row owns the firing. Calls
block on disk, so the daemon makes them from one worker thread, never the event loop.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evercron.model import Job, Run, RunStatus, Trigger
from evercron.store.schema import MIGRATIONS, Migration


@dataclass(frozen=True)
class StoredJob:
    """A job as the store keeps it."""

    job: Job
    paused: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class StoredChunk:
    """One stored piece of a run's output."""

    offset: int
    stream: str
    at: float
    data: bytes


@dataclass(frozen=True, slots=True)
class RunMark:
    """A run as a job's status strip shows it: enough to colour, date and link it."""

    id: int
    status: RunStatus
    scheduled_at: dt.datetime
    duration: float | None  # seconds from start to end; None until it has both


class StoreError(RuntimeError):
    """The store cannot be used (unreadable file, schema newer than this version)."""


def to_text(moment: dt.datetime) -> str:
    """The stored form of an aware time: UTC, microseconds, sortable as text."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def from_text(text: str | None) -> dt.datetime | None:
    """The aware UTC time of a stored text (None stays None)."""
    if text is None:
        return None
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)  # (it ends with "Z")


_RUN_COLUMNS = (
    "id, job, trigger, scheduled_at, attempt, status, started_at, finished_at, exit_code, "
    "signal, pid, cpu_user, cpu_system, max_rss_kb, output_bytes, output_truncated, error, "
    "retry_of, owner"
)


class SqliteStore:
    """Jobs, runs, output and events in one SQLite database file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the store {self.path}: {error}") from None
        self._lock = threading.Lock()
        self._batching = False

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group every call made inside into one transaction (one commit, one fsync).

        Each call still succeeds or fails on its own (a savepoint each); the whole group
        is durable when the block ends. Used by `StoreWorker` for group commits.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._batching = True
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._batching = False
            self._db.execute("COMMIT")

    @contextmanager
    def _transaction(self, one_statement: bool = False) -> Iterator[sqlite3.Connection]:
        # Inside a batch each call gets a savepoint, so that a failing call undoes only
        # itself - except a call of one statement: SQLite undoes a failed statement on
        # its own (and the savepoint's two extra statements per call add up at a
        # thousand runs a second).
        if self._batching and one_statement:
            yield self._db
            return
        if self._batching:
            self._db.execute("SAVEPOINT call")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK TO call")
                self._db.execute("RELEASE call")
                raise
            self._db.execute("RELEASE call")
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- schema ------------------------------------------------------------------------

    def migrate(
        self, *, expand_only: bool = False, migrations: Sequence[Migration] = MIGRATIONS
    ) -> int:
        """Bring the schema up to this version's; return the version the store is now at.

        With `expand_only` (an older daemon generation still uses the store) it stops
        before the first contract migration. A store a newer release has only expanded is
        used as it is; one contracted past what this release reads is refused with
        `StoreError`. See `evercron.store.schema` for the rule.
        """
        known = len(migrations)
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(schema_version)")}
            if "oldest_reader" not in columns:
                db.execute(
                    "ALTER TABLE schema_version ADD COLUMN oldest_reader INTEGER NOT NULL DEFAULT 0"
                )
            row = db.execute("SELECT version, oldest_reader FROM schema_version").fetchone()
            version, oldest = (int(row[0]), int(row[1])) if row else (0, 0)
            if oldest > known:
                raise StoreError(
                    f"the store {self.path} has schema {version}, newer than this evercron "
                    f"can read (it needs schema {oldest} or later; this one knows {known}): "
                    "upgrade evercron"
                )
            applied = version
            for migration in migrations[version:]:
                if expand_only and migration.is_contract:
                    break
                for statement in migration.statements():
                    db.execute(statement)
                applied += 1
                oldest = max(oldest, migration.oldest_reader)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?, ?)", (applied, oldest))
            elif applied != version:
                db.execute(
                    "UPDATE schema_version SET version = ?, oldest_reader = ?", (applied, oldest)
                )
        return applied

    # -- jobs --------------------------------------------------------------------------

    def put_job(self, job: Job, now: dt.datetime) -> bool:
        """Create or replace a job (keeping its paused flag); True when it was created."""
        definition = json.dumps(job.to_mapping(), sort_keys=True)
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET definition = ?, source = ?, updated_at = ? WHERE name = ?",
                (definition, job.source, to_text(now), job.name),
            )
            if cursor.rowcount:
                return False
            db.execute(
                "INSERT INTO jobs (name, definition, source, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (job.name, definition, job.source, to_text(now), to_text(now)),
            )
            return True

    def get_job(self, name: str) -> StoredJob | None:
        """The job called `name`, or None."""
        row = self._db.execute(
            "SELECT definition, source, paused, created_at, updated_at FROM jobs WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else _stored_job(row)

    def list_jobs(self) -> list[StoredJob]:
        """Every job, by name."""
        rows = self._db.execute(
            "SELECT definition, source, paused, created_at, updated_at FROM jobs ORDER BY name"
        ).fetchall()
        return [_stored_job(row) for row in rows]

    def delete_job(self, name: str) -> bool:
        """Remove a job (its runs stay in the history); True when it existed."""
        with self._transaction() as db:
            return db.execute("DELETE FROM jobs WHERE name = ?", (name,)).rowcount > 0

    def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume a job; True when it exists."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE jobs SET paused = ? WHERE name = ?", (int(paused), name))
            return cursor.rowcount > 0

    # -- claims and runs ---------------------------------------------------------------

    def claim(
        self,
        job: str,
        scheduled_at: dt.datetime,
        trigger: Trigger,
        owner: str,
        attempt: int = 1,
        status: RunStatus = RunStatus.RUNNING,
        error: str | None = None,
        retry_of: int | None = None,
    ) -> int | None:
        """Insert the run row of one firing; its id, or None when another process already
        claimed that firing (same job, scheduled time and attempt; manual runs never
        collide)."""
        finished = None if status is RunStatus.RUNNING else to_text(dt.datetime.now(dt.UTC))
        with self._transaction(one_statement=True) as db:
            cursor = db.execute(
                "INSERT INTO runs (job, trigger, scheduled_at, attempt, status, owner, "
                "finished_at, error, retry_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (
                    job,
                    str(trigger),
                    to_text(scheduled_at),
                    attempt,
                    str(status),
                    owner,
                    finished,
                    error,
                    retry_of,
                ),
            )
            return cursor.lastrowid if cursor.rowcount else None

    def claim_scheduled(
        self, firings: Sequence[tuple[str, dt.datetime]], owner: str
    ) -> list[int | None]:
        """Claim many scheduled firings (job, scheduled time; first attempt) at once, in
        one transaction: their run ids in the same order, None for each one another
        process already claimed - as `claim` would one by one."""
        ids: list[int | None] = []
        running, trigger = str(RunStatus.RUNNING), str(Trigger.SCHEDULE)
        with self._transaction() as db:
            for job, scheduled_at in firings:
                cursor = db.execute(
                    "INSERT INTO runs (job, trigger, scheduled_at, attempt, status, owner) "
                    "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT DO NOTHING",
                    (job, trigger, to_text(scheduled_at), running, owner),
                )
                ids.append(cursor.lastrowid if cursor.rowcount else None)
        return ids

    def boot_time(self, boot_id: str, booted_at: dt.datetime) -> dt.datetime:
        """The boot time recorded for `boot_id`: `booted_at` when it is the first one
        (every later caller of the same boot gets that first value)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO boots (boot_id, booted_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (boot_id, to_text(booted_at)),
            )
            row = db.execute("SELECT booted_at FROM boots WHERE boot_id = ?", (boot_id,)).fetchone()
        recorded = from_text(row[0])
        assert recorded is not None  # the column is NOT NULL
        return recorded

    def mark_started(
        self, run_id: int, pid: int | None, pid_start_ticks: int | None, started_at: dt.datetime
    ) -> None:
        """Record the process of a claimed run."""
        with self._transaction(one_statement=True) as db:
            db.execute(
                "UPDATE runs SET pid = ?, pid_start_ticks = ?, started_at = ? WHERE id = ?",
                (pid, pid_start_ticks, to_text(started_at), run_id),
            )

    def finish(
        self,
        run_id: int,
        status: RunStatus,
        finished_at: dt.datetime,
        *,
        started_at: dt.datetime | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
        cpu_user: float | None = None,
        cpu_system: float | None = None,
        max_rss_kb: int | None = None,
        output_bytes: int = 0,
        output_truncated: bool = False,
        error: str | None = None,
    ) -> None:
        """Record how a run ended; `started_at`, when given, replaces the start recorded
        at spawn (a held command starts when it is released)."""
        with self._transaction(one_statement=True) as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, started_at = COALESCE(?, "
                "started_at), exit_code = ?, signal = ?, cpu_user = ?, cpu_system = ?, "
                "max_rss_kb = ?, output_bytes = ?, output_truncated = ?, "
                "error = COALESCE(?, error) WHERE id = ?",
                (
                    str(status),
                    to_text(finished_at),
                    None if started_at is None else to_text(started_at),
                    exit_code,
                    signal,
                    cpu_user,
                    cpu_system,
                    max_rss_kb,
                    output_bytes,
                    int(output_truncated),
                    error,
                    run_id,
                ),
            )

    def get_run(self, run_id: int) -> Run | None:
        """The run with this id, or None."""
        row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        found = row.fetchone()
        return None if found is None else _run(found)

    def list_runs(
        self,
        job: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
        *,
        before: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        retry_of: int | None = None,
    ) -> list[Run]:
        """Runs, newest first, optionally of one job and/or one status; `before` pages
        (ids below it), `since`/`until` bound the scheduled time (inclusive/exclusive),
        `retry_of` keeps the retries of one run."""
        clauses, values = [], []
        for clause, value in (
            ("job = ?", job),
            ("status = ?", None if status is None else str(status)),
            ("id < ?", before),
            ("scheduled_at >= ?", None if since is None else to_text(since)),
            ("scheduled_at < ?", None if until is None else to_text(until)),
            ("retry_of = ?", retry_of),
        ):
            if value is not None:
                clauses.append(clause)
                values.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?",
            (*values, limit),
        ).fetchall()
        return [_run(row) for row in rows]

    def latest_runs(self, per_job: int) -> dict[str, list[RunMark]]:
        """The newest `per_job` runs of every job, newest first, by job name, briefly (one
        indexed read per job: a thousand jobs with long histories take milliseconds)."""
        names = [row[0] for row in self._db.execute("SELECT name FROM jobs ORDER BY name")]
        query = (
            "SELECT id, status, scheduled_at, started_at, finished_at FROM runs "
            "WHERE job = ? ORDER BY id DESC LIMIT ?"
        )
        return {
            name: [_run_mark(row) for row in self._db.execute(query, (name, per_job))]
            for name in names
        }

    def job_counts(self) -> tuple[int, int]:
        """How many jobs there are, and how many of them are paused."""
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(paused), 0) FROM jobs").fetchone()
        return int(row[0]), int(row[1])

    def last_scheduled(self, job: str) -> dt.datetime | None:
        """The latest scheduled time claimed for `job` by its schedule (misfire baseline)."""
        row = self._db.execute(
            "SELECT MAX(scheduled_at) FROM runs WHERE job = ? AND trigger IN (?, ?)",
            (job, str(Trigger.SCHEDULE), str(Trigger.CATCH_UP)),
        ).fetchone()
        return from_text(row[0]) if row else None

    def running(self, owner: str | None = None) -> list[tuple[Run, int | None]]:
        """Runs still marked running (of one owner), with their process start ticks."""
        rows = self._db.execute(
            f"SELECT {_RUN_COLUMNS}, pid_start_ticks FROM runs WHERE status = ?"
            + (" AND owner = ?" if owner is not None else ""),
            (str(RunStatus.RUNNING),) + ((owner,) if owner is not None else ()),
        ).fetchall()
        return [(_run(row[:-1]), row[-1]) for row in rows]

    def request_kill(self, run_id: int, at: dt.datetime) -> bool:
        """Ask the process owning a running run to kill it; False if it is not running."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET kill_requested_at = ? WHERE id = ? AND status = ?",
                (to_text(at), run_id, str(RunStatus.RUNNING)),
            )
            return cursor.rowcount > 0

    def kill_requests(self, owner: str) -> list[int]:
        """Running runs of `owner` whose kill another process asked for."""
        rows = self._db.execute(
            "SELECT id FROM runs WHERE status = ? AND owner = ? AND kill_requested_at IS NOT NULL",
            (str(RunStatus.RUNNING), owner),
        ).fetchall()
        return [row[0] for row in rows]

    # -- output ------------------------------------------------------------------------

    def append_output(self, run_id: int, chunks: Iterable[StoredChunk]) -> None:
        """Store a batch of output chunks of one run."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO output (run_id, offset, stream, at, data) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, c.offset, c.stream, c.at, c.data) for c in chunks],
            )

    def read_output(self, run_id: int, after: int = -1, limit: int = 1000) -> list[StoredChunk]:
        """Stored chunks of a run whose offset is greater than `after`, in order."""
        rows = self._db.execute(
            "SELECT offset, stream, at, data FROM output WHERE run_id = ? AND offset > ? "
            "ORDER BY offset LIMIT ?",
            (run_id, after, limit),
        ).fetchall()
        return [StoredChunk(row[0], row[1], row[2], bytes(row[3])) for row in rows]

    def tail_start(self, run_id: int, tail_bytes: int) -> int:
        """Where to read the last `tail_bytes` of a run's stored output from: the offset
        of the chunk holding the first of them (0 when the output is shorter)."""
        last = self._db.execute(
            "SELECT offset + length(data) FROM output WHERE run_id = ? "
            "ORDER BY offset DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        if last is None or last[0] <= tail_bytes:
            return 0
        row = self._db.execute(
            "SELECT offset FROM output WHERE run_id = ? AND offset <= ? "
            "ORDER BY offset DESC LIMIT 1",
            (run_id, last[0] - tail_bytes),
        ).fetchone()
        return 0 if row is None else int(row[0])

    # -- events and retention ----------------------------------------------------------

    def add_event(self, kind: str, detail: str, at: dt.datetime) -> None:
        """Record something the daemon did (start, stop, lost runs, upgrades)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)",
                (to_text(at), kind, detail),
            )

    def prune(self, keep_per_job: int, older_than: dt.datetime) -> int:
        """Delete finished runs (and their output) beyond the newest `keep_per_job` of
        each job that also ended before `older_than`; return how many went."""
        with self._transaction() as db:
            doomed = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM (SELECT id, status, finished_at, ROW_NUMBER() OVER "
                    "(PARTITION BY job ORDER BY id DESC) AS n FROM runs) "
                    "WHERE n > ? AND status != ? AND finished_at < ?",
                    (keep_per_job, str(RunStatus.RUNNING), to_text(older_than)),
                )
            ]
            db.executemany("DELETE FROM output WHERE run_id = ?", [(i,) for i in doomed])
            db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in doomed])
        return len(doomed)


def _stored_job(row: tuple[str, str, int, str, str]) -> StoredJob:
    created, updated = from_text(row[3]), from_text(row[4])
    assert created is not None and updated is not None
    return StoredJob(
        Job.from_mapping(json.loads(row[0]), source=row[1]), bool(row[2]), created, updated
    )


_STATUSES = {status.value: status for status in RunStatus}


def _run_mark(row: tuple[Any, ...]) -> RunMark:
    """A `RunMark` from (id, status, scheduled_at, started_at, finished_at). Twenty
    thousand of them make a jobs page: the stored times (which end with "Z", UTC to
    fromisoformat) are read directly."""
    duration = None
    if row[3] is not None and row[4] is not None:
        ended = dt.datetime.fromisoformat(row[4]) - dt.datetime.fromisoformat(row[3])
        duration = ended.total_seconds()
    return RunMark(row[0], _STATUSES[row[1]], dt.datetime.fromisoformat(row[2]), duration)


def _run(row: tuple[Any, ...]) -> Run:
    """A `Run` from a row of `_RUN_COLUMNS` (SQLite returns exactly the stored types)."""
    scheduled = from_text(row[3])
    assert scheduled is not None
    return Run(
        id=row[0],
        job=row[1],
        trigger=Trigger(row[2]),
        scheduled_at=scheduled,
        attempt=row[4],
        status=RunStatus(row[5]),
        started_at=from_text(row[6]),
        finished_at=from_text(row[7]),
        exit_code=row[8],
        signal=row[9],
        pid=row[10],
        cpu_user=row[11],
        cpu_system=row[12],
        max_rss_kb=row[13],
        output_bytes=row[14],
        output_truncated=bool(row[15]),
        error=row[16],
        retry_of=row[17],
        owner=row[18],
    )
