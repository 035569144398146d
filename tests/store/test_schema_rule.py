"""The expand/contract rule for schema changes (evercron.store.schema), held to account.

During a hot upgrade the old and the new release use one store at once; these tests
check that every shipped migration only expands, that an older release keeps working on
a store a newer one expanded, and that contract migrations wait for older generations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from evercron.model import RunStatus, Trigger
from evercron.store import Claim, RunEnd, StoredChunk, StoreError
from evercron.store.schema import MIGRATIONS, Migration
from evercron.store.sqlite import SqliteStore

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
_EXPANDING = re.compile(
    r"^(CREATE (UNIQUE )?INDEX|CREATE TABLE|ALTER TABLE \w+ ADD COLUMN)\b", re.IGNORECASE
)


@pytest.mark.parametrize("number", range(1, len(MIGRATIONS) + 1))
def test_every_expand_migration_only_adds(number: int) -> None:
    migration = MIGRATIONS[number - 1]
    if migration.is_contract:
        assert 0 < migration.oldest_reader < number, "a contract names an older reader"
        return
    for statement in migration.statements():
        assert _EXPANDING.match(statement), f"migration {number} is not expand-only: {statement}"
        if "ADD COLUMN" in statement.upper() and "NOT NULL" in statement.upper():
            assert "DEFAULT" in statement.upper(), f"migration {number}: NOT NULL needs DEFAULT"


def migrate(
    path: Path, migrations: Sequence[Migration] = MIGRATIONS, expand_only: bool = False
) -> int:
    """Open the store at `path`, migrate it, close it; the version it is at."""

    async def go() -> int:
        store = SqliteStore(path)
        try:
            return await store.migrate(expand_only=expand_only, migrations=migrations)
        finally:
            await store.close()

    return asyncio.run(go())


def exercise(path: Path) -> None:
    """What a daemon does with its store, end to end, with this release's code."""

    async def go() -> None:
        store = SqliteStore(path)
        (claimed,) = await store.claim([Claim("job", NOW, Trigger.SCHEDULE)], "owner-a")
        run_id = claimed.run_id
        assert run_id is not None
        (again,) = await store.claim([Claim("job", NOW, Trigger.SCHEDULE)], "owner-b")
        assert again.run_id is None
        await store.mark_started(run_id, 123, 456, NOW)
        await store.append_output(run_id, [StoredChunk(0, "stdout", 1.0, b"hello")])
        assert await store.request_kill(run_id, NOW)
        assert await store.kill_requests("owner-a") == [run_id]
        await store.finish(run_id, RunEnd(RunStatus.SUCCEEDED, NOW, exit_code=0, output_bytes=5))
        finished = await store.get_run(run_id)
        assert finished is not None and finished.status is RunStatus.SUCCEEDED
        assert [c.data for c in await store.read_output(run_id)] == [b"hello"]
        assert await store.kill_requests("owner-a") == []
        await store.close()

    asyncio.run(go())


def test_this_release_works_on_a_store_a_newer_release_expanded(tmp_path: Path) -> None:
    path = tmp_path / "evercron.db"
    newer = [
        *MIGRATIONS,
        Migration(
            "ALTER TABLE runs ADD COLUMN labels TEXT NOT NULL DEFAULT '';"
            "CREATE TABLE nodes (name TEXT PRIMARY KEY, seen_at TEXT);"
            "CREATE INDEX runs_owner ON runs (owner)"
        ),
    ]
    assert migrate(path, newer) == len(newer)
    # This release, as the draining (or rolled back) generation: left as it is, not refused.
    assert migrate(path) == len(newer)
    exercise(path)


def test_contract_migrations_wait_while_an_older_generation_runs(tmp_path: Path) -> None:
    path = tmp_path / "evercron.db"
    migrate(path)
    newer = [
        *MIGRATIONS,
        Migration("CREATE TABLE expanded (x INTEGER)"),
        Migration("DROP INDEX runs_status", oldest_reader=len(MIGRATIONS)),
        Migration("CREATE TABLE after_contract (x INTEGER)"),
    ]
    assert migrate(path, newer, expand_only=True) == len(MIGRATIONS) + 1
    exercise(path)  # the draining generation still works
    assert migrate(path, newer) == len(newer)
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"expanded", "after_contract"} <= names and "runs_status" not in names


def test_release_older_than_a_contract_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evercron.db"
    newer = [*MIGRATIONS, Migration("DROP INDEX runs_status", oldest_reader=len(MIGRATIONS) + 1)]
    migrate(path, newer)
    with pytest.raises(StoreError, match="newer than this evercron can read"):
        migrate(path)


def test_a_store_from_the_first_release_is_brought_forward(tmp_path: Path) -> None:
    path = tmp_path / "evercron.db"
    with sqlite3.connect(path) as db:  # exactly what release 1 wrote
        db.executescript(MIGRATIONS[0].sql)
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
    assert migrate(path) == len(MIGRATIONS)
    exercise(path)
