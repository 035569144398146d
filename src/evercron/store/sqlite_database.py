"""The SQL of the embedded store: one SQLite file in WAL mode, used from one thread.

Private to `evercron.store.sqlite`, whose worker thread makes every call here (never the
event loop). Each write runs inside the transaction its caller opened (`write()`), so a
thousand claims queued together cost one commit. The claim is a single INSERT guarded by
the unique index on (job, scheduled_at, attempt): whoever inserts the row owns the firing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evercron.model import Job, JobError, Run, RunStatus, Trigger
from evercron.store.records import (
    BrokenJob,
    Claim,
    Claimed,
    JobSchedule,
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
from evercron.store.schema import MIGRATIONS, Migration
from evercron.text import printable

log = logging.getLogger("evercron.store")
BUSY_TIMEOUT_MS = 5000
_RUNNING = str(RunStatus.RUNNING)
_SKIPPED = str(RunStatus.SKIPPED)
_SCHEDULED = (str(Trigger.SCHEDULE), str(Trigger.CATCH_UP))


_REQUEST_COLUMNS = "id, job, requested_at, by_node, run_id"


def _request(row: tuple[Any, ...]) -> TriggerRequest:
    at = from_text(row[2])
    assert at is not None
    return TriggerRequest(row[0], row[1], at, row[3], row[4])


def to_text(moment: dt.datetime) -> str:
    """The stored form of an aware time: UTC, microseconds, sortable as text."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def from_text(text: str | None) -> dt.datetime | None:
    """The aware UTC time of a stored text (None stays None)."""
    if text is None:
        return None
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)  # (it ends with "Z")


@contextlib.contextmanager
def translated_errors(path: Path) -> Iterator[None]:
    """SQLite's errors as the store's: a full disk, a lock held too long or an I/O error
    pass (`StoreUnavailable`); anything else is a `StoreError`."""
    try:
        yield
    except sqlite3.OperationalError as error:
        raise StoreUnavailable(f"{path}: {error}") from error
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: {error}") from error


_RUN_COLUMNS = (
    "id, job, trigger, scheduled_at, attempt, status, started_at, finished_at, exit_code, "
    "signal, pid, cpu_user, cpu_system, max_rss_kb, output_bytes, output_truncated, error, "
    "retry_of, owner, node"
)
# Name and definition as bytes: a row written by hand may hold text that is not UTF-8,
# which sqlite3 would fail to decode for the whole query.
_JOB_COLUMNS = (
    "CAST(name AS BLOB), CAST(definition AS BLOB), source, paused, created_at, updated_at"
)


class SqliteDatabase:
    """Jobs, runs, output and events in one SQLite file (one thread at a time)."""

    def __init__(self, path: Path, node: str | None = None) -> None:
        self.path = path
        self.node = node
        with translated_errors(path):
            _create_private(path)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._in_write = False

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for the backend's other SQL (on the store's thread only)."""
        return self._db

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction around the block (`BEGIN IMMEDIATE` ... `COMMIT`); rolled
        back when the block or the commit fails."""
        with translated_errors(self.path):
            self._db.execute("BEGIN IMMEDIATE")
        self._in_write = True
        try:
            yield
            with translated_errors(self.path):
                self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._in_write = False

    @contextlib.contextmanager
    def step(self) -> Iterator[sqlite3.Connection]:
        """One call inside `write()`: undone alone if it fails (a savepoint)."""
        assert self._in_write, "store writes run inside write()"
        self._db.execute("SAVEPOINT call")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK TO call")
            self._db.execute("RELEASE call")
            raise
        self._db.execute("RELEASE call")

    # -- schema ------------------------------------------------------------------------

    def migrate(
        self, expand_only: bool = False, migrations: Sequence[Migration] = MIGRATIONS
    ) -> int:
        """See `Store.migrate` (run inside `write()`)."""
        known = len(migrations)
        db = self._db
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

    def job_rows(self, name: str | None = None) -> list[StoredJob | BrokenJob]:
        """Every job row (or the one named), read back as a job or as broken."""
        if name is None:
            rows = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY name").fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE name = ?", (name,)
            ).fetchall()
        return [_job_row(row) for row in rows]

    def job_schedules(self) -> list[JobSchedule]:
        """See `Store.job_schedules` (what reads as a job: a broken row's schedule is
        whatever it holds, so it is checked where it is used)."""
        rows = self._db.execute(
            "SELECT name, json_extract(definition, '$.schedule'), "
            "json_extract(definition, '$.timezone'), paused FROM jobs ORDER BY name"
        ).fetchall()
        return [
            JobSchedule(row[0], row[1], row[2], bool(row[3]))
            for row in rows
            if isinstance(row[1], str) and isinstance(row[2], str | None)
        ]

    def create_job(self, job: Job, now: dt.datetime) -> bool:
        """See `Store.create_job`."""
        with self.step() as db:
            cursor = db.execute(
                "INSERT INTO jobs (name, definition, source, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (job.name, _definition(job), job.source, to_text(now), to_text(now)),
            )
            return cursor.rowcount > 0

    def put_job(self, job: Job, now: dt.datetime) -> bool:
        """See `Store.put_job`."""
        with self.step() as db:
            cursor = db.execute(
                "UPDATE jobs SET definition = ?, source = ?, updated_at = ? WHERE name = ?",
                (_definition(job), job.source, to_text(now), job.name),
            )
            if cursor.rowcount:
                return False
        return self.create_job(job, now)

    def update_job(self, job: Job, now: dt.datetime, was: dt.datetime) -> bool:
        """See `Store.update_job`."""
        with self.step() as db:
            cursor = db.execute(
                "UPDATE jobs SET definition = ?, source = ?, updated_at = ? "
                "WHERE name = ? AND updated_at = ?",
                (_definition(job), job.source, to_text(now), job.name, to_text(was)),
            )
            return cursor.rowcount > 0

    def delete_job(self, name: str) -> bool:
        """See `Store.delete_job`."""
        with self.step() as db:
            return db.execute("DELETE FROM jobs WHERE name = ?", (name,)).rowcount > 0

    def set_paused(self, name: str, paused: bool) -> bool:
        """See `Store.set_paused`."""
        with self.step() as db:
            cursor = db.execute("UPDATE jobs SET paused = ? WHERE name = ?", (int(paused), name))
            return cursor.rowcount > 0

    def reconcile_jobs(self, jobs: Sequence[Job], now: dt.datetime) -> list[str]:
        """See `Store.reconcile_jobs`."""
        changed = []
        wanted = {job.name: job for job in jobs}
        stored = {
            row.job.name if isinstance(row, StoredJob) else row.name: row for row in self.job_rows()
        }
        for name, row in stored.items():
            from_file = isinstance(row, BrokenJob) or row.job.source != "api"
            if from_file and name not in wanted:
                if isinstance(row, BrokenJob):
                    log.warning("job %s removed: %s", name, row.error)
                self.delete_job(name)
                changed.append(name)
        for name, job in wanted.items():
            existing = stored.get(name)
            if isinstance(existing, StoredJob) and existing.job.source == "api":
                log.warning("config job %s replaces the API job of the same name", name)
            if not isinstance(existing, StoredJob) or existing.job != job:
                self.put_job(job, now)
                changed.append(name)
        return changed

    # -- claims and runs ---------------------------------------------------------------

    def claim(self, claims: Sequence[Claim], owner: str, now: dt.datetime) -> list[Claimed]:
        """See `Store.claim` (inside `write()`: the whole list is one transaction)."""
        finished = to_text(now)
        return [self._claim_answering(claim, owner, finished) for claim in claims]

    def _claim_answering(self, claim: Claim, owner: str, now: str) -> Claimed:
        """`_claim_one`, made only while its trigger request (if any) is unanswered."""
        if claim.request is None:
            return self._claim_one(claim, owner, now)
        row = self._db.execute(
            "SELECT run_id FROM trigger_requests WHERE id = ?", (claim.request,)
        ).fetchone()
        if row is None or row[0] is not None:
            return Claimed(None)  # withdrawn, or answered by another node
        outcome = self._claim_one(claim, owner, now)
        self._db.execute(
            "UPDATE trigger_requests SET run_id = ? WHERE id = ?", (outcome.run_id, claim.request)
        )
        return outcome

    def _claim_one(self, claim: Claim, owner: str, now: str) -> Claimed:
        db = self._db
        error = claim.skip_reason
        if error is None and claim.exclusive:
            row = db.execute(
                "SELECT id FROM runs WHERE job = ? AND status = ? LIMIT 1", (claim.job, _RUNNING)
            ).fetchone()
            if row is not None:
                error = f"concurrency=forbid: run {row[0]} is still running"
        status = _RUNNING if error is None else _SKIPPED
        cursor = db.execute(
            "INSERT INTO runs (job, trigger, scheduled_at, attempt, status, owner, node, "
            "finished_at, error, retry_of, exclusive) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (
                claim.job,
                str(claim.trigger),
                to_text(claim.scheduled_at),
                claim.attempt,
                status,
                owner,
                self.node,
                None if error is None else now,
                storable(error),
                claim.retry_of,
                int(claim.exclusive and error is None),
            ),
        )
        if not cursor.rowcount:
            return Claimed(None)
        run_id = cursor.lastrowid
        assert run_id is not None
        if error is not None:
            return Claimed(run_id, RunStatus.SKIPPED, error, fence=run_id)
        replaced: tuple[int, ...] = ()
        if claim.replace:
            replaced = tuple(
                row[0]
                for row in db.execute(
                    "UPDATE runs SET kill_requested_at = ? WHERE job = ? AND status = ? "
                    "AND id != ? RETURNING id",
                    (now, claim.job, _RUNNING, run_id),
                )
            )
        return Claimed(run_id, RunStatus.RUNNING, None, replaced, fence=run_id)

    def mark_started(
        self,
        run_id: int,
        pid: int | None,
        pid_start_ticks: int | None,
        started_at: dt.datetime,
        cgroups: Sequence[str] = (),
    ) -> None:
        """See `Store.mark_started` (the cgroups one per line)."""
        self._db.execute(
            "UPDATE runs SET pid = ?, pid_start_ticks = ?, started_at = ?, cgroups = ? "
            "WHERE id = ?",
            (pid, pid_start_ticks, to_text(started_at), "\n".join(cgroups) or None, run_id),
        )

    def finish(self, run_id: int, end: RunEnd, fence: int | None = None) -> bool:
        """See `Store.finish` (one node: a run's fence is its id)."""
        if fence is not None and fence != run_id:
            return False
        cursor = self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, started_at = COALESCE(?, "
            "started_at), exit_code = ?, signal = ?, cpu_user = ?, cpu_system = ?, "
            "max_rss_kb = ?, output_bytes = ?, output_truncated = ?, "
            "error = COALESCE(?, error) WHERE id = ? AND status = ?",
            (
                str(end.status),
                to_text(end.finished_at),
                None if end.started_at is None else to_text(end.started_at),
                end.exit_code,
                end.signal,
                end.cpu_user,
                end.cpu_system,
                end.max_rss_kb,
                end.output_bytes,
                int(end.output_truncated),
                storable(end.error),
                run_id,
                _RUNNING,
            ),
        )
        return cursor.rowcount > 0

    def get_run(self, run_id: int) -> Run | None:
        """See `Store.get_run`."""
        row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        found = row.fetchone()
        return None if found is None else _run(found)

    def list_runs(self, query: RunQuery) -> list[Run]:
        """See `Store.list_runs`."""
        conditions = query.conditions()
        clauses = [f"{test} ?" for test, _ in conditions]
        values = [to_text(v) if isinstance(v, dt.datetime) else v for _, v in conditions]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?",
            (*values, query.limit),
        ).fetchall()
        return [_run(row) for row in rows]

    def latest_runs(self, per_job: int) -> dict[str, list[RunMark]]:
        """See `Store.latest_runs` (one indexed read per job)."""
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
        """See `Store.job_counts`."""
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(paused), 0) FROM jobs").fetchone()
        return int(row[0]), int(row[1])

    def recent_status_counts(self, last: int) -> dict[RunStatus, int]:
        """See `Store.recent_status_counts`."""
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM (SELECT status FROM runs ORDER BY id DESC LIMIT ?) "
            "GROUP BY status",
            (last,),
        ).fetchall()
        return {RunStatus(row[0]): row[1] for row in rows}

    def last_scheduled(self, job: str) -> dt.datetime | None:
        """See `Store.last_scheduled`."""
        row = self._db.execute(
            "SELECT MAX(scheduled_at) FROM runs WHERE job = ? AND trigger IN (?, ?)",
            (job, *_SCHEDULED),
        ).fetchone()
        return from_text(row[0]) if row else None

    def running(self, owner: str | None = None) -> list[RunningRun]:
        """See `Store.running`."""
        rows = self._db.execute(
            f"SELECT {_RUN_COLUMNS}, pid_start_ticks, cgroups FROM runs WHERE status = ?"
            + (" AND owner = ?" if owner is not None else ""),
            (_RUNNING,) + ((owner,) if owner is not None else ()),
        ).fetchall()
        return [
            RunningRun(_run(row[:-2]), row[-2], tuple(row[-1].split("\n")) if row[-1] else ())
            for row in rows
        ]

    def request_kill(self, run_id: int, at: dt.datetime) -> bool:
        """See `Store.request_kill`."""
        cursor = self._db.execute(
            "UPDATE runs SET kill_requested_at = ? WHERE id = ? AND status = ?",
            (to_text(at), run_id, _RUNNING),
        )
        return cursor.rowcount > 0

    def request_trigger(self, job: str, at: dt.datetime) -> int:
        """See `Store.request_trigger`."""
        cursor = self._db.execute(
            "INSERT INTO trigger_requests (job, requested_at, by_node) VALUES (?, ?, ?)",
            (job, to_text(at), self.node),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def open_trigger_requests(self, since: dt.datetime) -> list[TriggerRequest]:
        """See `Store.open_trigger_requests`."""
        rows = self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM trigger_requests "
            "WHERE run_id IS NULL AND requested_at >= ? ORDER BY id",
            (to_text(since),),
        ).fetchall()
        return [_request(row) for row in rows]

    def trigger_request(self, request_id: int) -> TriggerRequest | None:
        """See `Store.trigger_request`."""
        row = self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM trigger_requests WHERE id = ?", (request_id,)
        ).fetchone()
        return None if row is None else _request(row)

    def withdraw_trigger_request(self, request_id: int) -> bool:
        """See `Store.withdraw_trigger_request`."""
        row = self._db.execute(
            "DELETE FROM trigger_requests WHERE id = ? RETURNING run_id", (request_id,)
        ).fetchone()
        return row is not None and row[0] is None

    def kill_requests(self, owner: str) -> list[int]:
        """See `Store.kill_requests`."""
        rows = self._db.execute(
            "SELECT id FROM runs WHERE status = ? AND owner = ? AND kill_requested_at IS NOT NULL",
            (_RUNNING, owner),
        ).fetchall()
        return [row[0] for row in rows]

    def boot_time(self, boot_id: str, booted_at: dt.datetime) -> dt.datetime:
        """See `Store.boot_time`."""
        self._db.execute(
            "INSERT INTO boots (boot_id, booted_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (boot_id, to_text(booted_at)),
        )
        row = self._db.execute("SELECT booted_at FROM boots WHERE boot_id = ?", (boot_id,))
        recorded = from_text(row.fetchone()[0])
        assert recorded is not None  # the column is NOT NULL
        return recorded

    # -- output ------------------------------------------------------------------------

    def append_output(self, run_id: int, chunks: Iterable[StoredChunk]) -> None:
        """See `Store.append_output`."""
        with self.step() as db:
            db.executemany(
                "INSERT OR IGNORE INTO output (run_id, offset, stream, at, data) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, c.offset, c.stream, c.at, c.data) for c in chunks],
            )

    def read_output(self, run_id: int, after: int, limit: int) -> list[StoredChunk]:
        """See `Store.read_output`."""
        rows = self._db.execute(
            "SELECT offset, stream, at, data FROM output WHERE run_id = ? AND offset > ? "
            "ORDER BY offset LIMIT ?",
            (run_id, after, limit),
        ).fetchall()
        return [StoredChunk(row[0], row[1], row[2], bytes(row[3])) for row in rows]

    def tail_start(self, run_id: int, tail_bytes: int) -> int:
        """See `Store.tail_start`."""
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
        """See `Store.add_event`."""
        self._db.execute(
            "INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)",
            (to_text(at), kind, storable(detail)),
        )

    def prune(self, keep_per_job: int, older_than: dt.datetime) -> int:
        """See `Store.prune`."""
        with self.step() as db:
            doomed = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM (SELECT id, status, finished_at, ROW_NUMBER() OVER "
                    "(PARTITION BY job ORDER BY id DESC) AS n FROM runs) "
                    "WHERE n > ? AND status != ? AND finished_at < ?",
                    (keep_per_job, _RUNNING, to_text(older_than)),
                )
            ]
            db.executemany("DELETE FROM output WHERE run_id = ?", [(i,) for i in doomed])
            db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in doomed])
            db.execute(
                "DELETE FROM trigger_requests WHERE requested_at < ?", (to_text(older_than),)
            )
        return len(doomed)


def _create_private(path: Path) -> None:
    """Create the database file (and its WAL companions) readable by its owner alone,
    whatever the directory's mode or the umask: it holds jobs' `env` secrets."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def storable(text: str | None) -> str | None:
    """`text` as UTF-8 can hold it: a lone surrogate (from a file name or an error
    message) becomes a backslash escape instead of failing the write."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _definition(job: Job) -> str:
    return json.dumps(job.to_stored(), sort_keys=True)


def _job_row(row: tuple[bytes, bytes, str, int, str, str]) -> StoredJob | BrokenJob:
    raw_name, definition, source, paused, created_text, updated_text = row
    name = printable(bytes(raw_name).decode("utf-8", "replace"))
    try:
        data = json.loads(bytes(definition))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        job = Job.from_mapping(data, source=source)
        if job.name != name:
            raise ValueError(f'it names the job "{job.name}"')
    except (JobError, ValueError, TypeError, RecursionError) as error:
        return BrokenJob(name, f"the stored definition cannot be read: {error}")
    created, updated = from_text(created_text), from_text(updated_text)
    assert created is not None and updated is not None
    return StoredJob(job, bool(paused), created, updated)


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
        node=row[19],
        fence=row[0],  # one node, nobody else claims: the id increases as fences must
    )
