"""Job rows that do not read back as jobs (written by hand, or by a release that let
invalid text through) never break a listing: they are listed apart, with the reason."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from pathlib import Path

import pytest

from evercron.model import Job
from evercron.store.sqlite import SqliteStore
from evercron.store.sqlite_database import to_text

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
GOOD = {"name": "good", "schedule": "@daily", "command": "true"}
BAD_DEFINITIONS: dict[str, str | bytes] = {
    "surrogate": json.dumps({**GOOD, "name": "surrogate", "env": {"A": "\udfff"}}),
    "nul": json.dumps({**GOOD, "name": "nul", "cwd": "/tmp\0"}),
    "not-json": "{",
    "not-an-object": "[1, 2]",
    "not-utf8": b'{"name": "not-utf8", "command": "\xff"}',
    "renamed": json.dumps({**GOOD, "name": "other"}),
    "bad-value": json.dumps({**GOOD, "name": "bad-value", "timeout": "soon"}),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _insert(path: Path, name: str, definition: str | bytes) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO jobs (name, definition, source, created_at, updated_at) "
            "VALUES (?, ?, 'api', ?, ?)",
            (name, definition, to_text(NOW), to_text(NOW)),
        )


async def test_listings_leave_out_unreadable_rows_and_log_each_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "evercron.db")
    await store.migrate()
    await store.put_job(Job.from_mapping(GOOD), NOW)
    for name, definition in BAD_DEFINITIONS.items():
        _insert(store.path, name, definition)
    with caplog.at_level(logging.WARNING, logger="evercron.store"):
        assert [stored.job.name for stored in await store.list_jobs()] == ["good"]
        assert [stored.job.name for stored in await store.list_jobs()] == ["good"]
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == len(BAD_DEFINITIONS), warned
    broken = {row.name: row.error for row in await store.broken_jobs()}
    assert sorted(broken) == sorted(BAD_DEFINITIONS)
    assert "env: A is not valid Unicode text" in broken["surrogate"]
    assert 'it names the job "other"' in broken["renamed"]
    for name, error in broken.items():
        error.encode("utf-8")  # quotable in a log line or a JSON answer
        assert await store.get_job(name) is None
    assert await store.delete_job("surrogate")
    await store.close()
