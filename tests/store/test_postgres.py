"""What the PostgreSQL store promises beyond the contract suite: several nodes migrating
at once, the schema rule, passing failures as `StoreUnavailable`, claims that survive a
lost answer, the database deciding `forbid` between nodes, and no password anywhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time

import psycopg
import pytest

from evercron.model import RunStatus, Trigger
from evercron.store import Claim, StoreError, StoreUnavailable
from evercron.store.postgres import PostgresStore
from evercron.store.postgres_schema import MIGRATIONS
from evercron.store.schema import Migration
from tests.postgres import PostgresServer, free_port

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
_EXPANDING = re.compile(
    r"^(CREATE (UNIQUE )?INDEX|CREATE TABLE|CREATE SEQUENCE|ALTER TABLE \w+ ADD COLUMN)\b",
    re.IGNORECASE,
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


async def test_nodes_starting_together_migrate_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url, node=f"node-{n}") for n in range(4)]
    try:
        versions = await asyncio.gather(*(store.migrate() for store in stores))
        assert versions == [len(MIGRATIONS)] * 4
    finally:
        for store in stores:
            await store.close()


async def test_an_older_release_works_on_an_expanded_database(postgres_url: str) -> None:
    newer = [*MIGRATIONS, Migration("ALTER TABLE runs ADD COLUMN labels TEXT NOT NULL DEFAULT ''")]
    store = PostgresStore(postgres_url, node="a")
    try:
        assert await store.migrate(migrations=newer) == len(newer)
        assert await store.migrate() == len(newer)  # this release: left as it is
        (claimed,) = await store.claim([Claim("job", NOW, Trigger.SCHEDULE)], "owner")
        assert claimed.owned
    finally:
        await store.close()


async def test_contracts_wait_for_expand_only_and_refuse_older_releases(
    postgres_url: str,
) -> None:
    newer = [
        *MIGRATIONS,
        Migration("CREATE TABLE expanded (x INTEGER)"),
        Migration("DROP INDEX runs_status", oldest_reader=len(MIGRATIONS) + 1),
    ]
    store = PostgresStore(postgres_url, node="a")
    try:
        assert await store.migrate(expand_only=True, migrations=newer) == len(MIGRATIONS) + 1
        assert await store.migrate(migrations=newer) == len(newer)
        with pytest.raises(StoreError, match="newer than this evercron can read"):
            await store.migrate()
    finally:
        await store.close()


async def test_a_retried_claim_finds_the_row_its_lost_answer_committed(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    try:
        claims = [Claim("job", NOW, Trigger.SCHEDULE), Claim("forbidding", NOW, Trigger.SCHEDULE)]
        claims.append(Claim("skipped", NOW, Trigger.SCHEDULE, skip_reason="missed"))
        first = await store.claim(claims, "owner-a")
        # The same call again, as `persist` makes it when the first answer was lost:
        again = await store.claim(claims, "owner-a")
        assert [o.run_id for o in again] == [o.run_id for o in first]
        assert [o.status for o in again] == [RunStatus.RUNNING, RunStatus.RUNNING, "skipped"]
        assert [o.run_id for o in await store.claim(claims, "owner-b")] == [None] * 3
        assert first[0].run_id is not None
        await store.mark_started(first[0].run_id, 123, 1, NOW)
        (started,) = await store.claim(claims[:1], "owner-a")
        assert started.run_id is None  # a started run is never handed out twice
    finally:
        await store.close()


async def test_forbid_holds_between_nodes_claiming_at_once(postgres_url: str) -> None:
    nodes = [PostgresStore(postgres_url, node=f"n{n}") for n in range(3)]
    await nodes[0].migrate()
    try:
        moments = [NOW + dt.timedelta(seconds=s) for s in range(5)]
        outcomes = await asyncio.gather(
            *(
                node.claim([Claim("j", at, Trigger.SCHEDULE, exclusive=True)], f"owner-{n}")
                for n, node in enumerate(nodes)
                for at in moments
            )
        )
        statuses = [o.status for (o,) in outcomes if o.run_id is not None]
        assert statuses.count(RunStatus.RUNNING) == 1
        assert len(statuses) == len(moments)  # every firing recorded once
    finally:
        for node in nodes:
            await node.close()


async def test_a_lost_connection_is_a_passing_failure(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    database = postgres_url.rsplit("/", 1)[1]
    try:
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            waiting = asyncio.ensure_future(store.list_jobs())
            await asyncio.sleep(0.5)  # (it waits for the lock)
            with postgres_server.connect("postgres") as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> %s",
                    (database, blocker.info.backend_pid),
                )
            with pytest.raises(StoreUnavailable, match="terminating connection"):
                await waiting
        with postgres_server.connect("postgres") as admin:  # every pooled connection too
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
        assert await store.list_jobs() == []  # a dropped connection is not handed out
    finally:
        await store.close()


async def test_a_silent_database_is_cut_off_at_the_deadline(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    store.link.timeout = 0.5
    try:
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
            began = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.claim([Claim("job", NOW, Trigger.SCHEDULE)], "owner")
            assert time.monotonic() - began < 3
        (claimed,) = await store.claim([Claim("job", NOW, Trigger.SCHEDULE)], "owner")
        assert claimed.owned  # the cut claim had changed nothing
    finally:
        await store.close()


async def test_the_password_is_never_shown(postgres_server: PostgresServer) -> None:
    secret = "s3cret-pass"
    store = PostgresStore(postgres_server.url("postgres", password=secret), node="a")
    assert secret not in store.description and "evercron@127.0.0.1" in store.description
    await store.close()
    nowhere = PostgresStore(
        f"postgresql://evercron:{secret}@127.0.0.1:{free_port()}/postgres", node="a"
    )
    nowhere.link.timeout = 2
    try:
        with pytest.raises(StoreUnavailable) as failure:
            await nowhere.list_jobs()
        assert secret not in str(failure.value)
    finally:
        await nowhere.close()
    with pytest.raises(StoreError) as bad:
        PostgresStore(f"postgresql://u:{secret}@host/db?nonsense=1", node="a")
    assert secret not in str(bad.value)
