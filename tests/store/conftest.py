"""Stores to test against: every backend the `Store` contract suite runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from evercron.store import Store
from evercron.store.postgres import PostgresStore
from evercron.store.sqlite import SqliteStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty store of each backend (PostgreSQL: a database of its own on the
    session's test server)."""
    opened: SqliteStore | PostgresStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "evercron.db", node="node-a")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_url"), node="node-a")
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()
