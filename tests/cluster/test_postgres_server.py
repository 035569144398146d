"""The test PostgreSQL server itself: reachable, one database per test, restartable."""

from __future__ import annotations

import psycopg

from tests.postgres import PostgresServer


def test_each_test_gets_an_empty_database(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        tables = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
        db.execute("CREATE TABLE scratch (x int)")
    assert postgres_server.port > 0


def test_an_immediate_restart_cuts_connections_and_comes_back(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        started = db.execute("SELECT pg_postmaster_start_time()").fetchone()
        postgres_server.restart_immediately()
        try:
            db.execute("SELECT 1")
        except psycopg.OperationalError:
            pass
        else:
            raise AssertionError("a connection survived an immediate restart")
    with psycopg.connect(postgres_url, autocommit=True) as db:
        assert db.execute("SELECT pg_postmaster_start_time()").fetchone() != started
