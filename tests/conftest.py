"""Suite-wide settings and fixtures.

Hypothesis runs derandomized so every run checks the same cases; `marker` guarantees that
no process a test started survives it (a leftover fails the test and is killed).
"""

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.markers import Marker
from tests.postgres import PostgresServer

settings.register_profile("evercron", derandomize=True, print_blob=True)
settings.load_profile("evercron")


@pytest.fixture
def marker() -> Iterator[Marker]:
    """A unique marker; the test fails if a marked process outlives it."""
    mark = Marker()
    yield mark
    left = mark.alive()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left behind: {left}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (tests/postgres.py). A test that needs
    it fails, never skips, when it cannot be started."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database of the session's server, dropped afterwards."""
    name = postgres_server.database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop(name)
