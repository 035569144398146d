"""What the PostgreSQL store promises beyond the contract suite: several nodes migrating
at once, the schema rule, passing failures as `StoreUnavailable`, claims that survive a
lost answer, the database deciding `forbid` between nodes, and no password anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import psycopg
import pytest

from evercron.model import Job, NotifyEvent, RunStatus, Trigger
from evercron.store import (
    ChannelQuota,
    Claim,
    EventPolicy,
    FanOut,
    NodeInfo,
    NodeState,
    RunEnd,
    StoreError,
    StoreUnavailable,
)
from evercron.store.postgres import PostgresStore
from evercron.store.postgres_link import CHECK_IDLE
from evercron.store.postgres_schema import MIGRATIONS
from evercron.store.schema import Migration
from tests.cluster.proxy import BlackHoleProxy
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
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """The database commits a second's claims whose answer never arrives (a proxy drops
    it); the store's retry of the same claims owns the rows the first try wrote."""
    async with _behind_a_proxy(postgres_server, postgres_url, timeout=2.0) as (store, proxy):
        claims = [
            Claim("job", NOW, Trigger.SCHEDULE, token="t1"),
            Claim("skipped", NOW, Trigger.SCHEDULE, skip_reason="missed", token="t2"),
        ]
        # A connection in steady use (not checked before it is handed out):
        await store.claim([Claim("warm", NOW, Trigger.SCHEDULE, token="t0")], "owner-a")
        proxy.lose_answers()
        with pytest.raises(StoreUnavailable):
            await store.claim(claims, "owner-a")
        proxy.restore()
        assert await _count(postgres_url, "SELECT count(*) FROM runs") == 3  # committed
        again = await store.claim(claims, "owner-a")  # as `persist` retries it
        assert None not in [o.run_id for o in again]
        assert [o.status for o in again] == ["running", "skipped"]
        assert await _count(postgres_url, "SELECT count(*) FROM runs") == 3
        # Another claim of the same firings - even by the same process - finds them taken:
        others = [replace(c, token=f"other-{c.token}") for c in claims]
        assert [o.run_id for o in await store.claim(others, "owner-a")] == [None] * 2


async def _count(url: str, query: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute(query)).fetchone()
        assert row is not None
        return int(row[0])


@contextlib.asynccontextmanager
async def _behind_a_proxy(
    server: PostgresServer, url: str, timeout: float
) -> AsyncIterator[tuple[PostgresStore, BlackHoleProxy]]:
    """A migrated store reaching the database through a `BlackHoleProxy`, with calls
    cut at `timeout` seconds; closed (and the proxy restored) afterwards."""
    with BlackHoleProxy(("127.0.0.1", server.port)) as proxy:
        store = PostgresStore(url.replace(f":{server.port}/", f":{proxy.port}/"), node="a")
        await store.migrate()
        store.link.timeout = timeout
        try:
            yield store, proxy
        finally:
            proxy.restore()
            await store.close()


async def test_a_silent_database_fails_a_call_on_an_idle_connection_in_time(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A connection idle for a while is checked before use; a database that has gone
    silent meanwhile fails that check at the call's deadline, not minutes later."""
    async with _behind_a_proxy(postgres_server, postgres_url, timeout=1.0) as (store, proxy):
        await asyncio.sleep(CHECK_IDLE + 0.2)
        proxy.lose_answers()
        began = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.list_jobs()
        assert time.monotonic() - began < 3.0


async def test_a_claim_made_again_finds_its_own_rows(postgres_url: str) -> None:
    """Claims that are not a busy second's (a `forbid` job's, a manual run) always look
    for their own rows when their key is taken, as a retry needs."""
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    try:
        claims = [
            Claim("forbidding", NOW, Trigger.SCHEDULE, exclusive=True, token="t2"),
            Claim("by-hand", NOW, Trigger.MANUAL, token="t4"),
        ]
        first = await store.claim(claims, "owner-a")
        again = await store.claim(claims, "owner-a")
        assert [o.run_id for o in again] == [o.run_id for o in first]
        assert None not in [o.run_id for o in first]
        assert [o.status for o in again] == ["running", "running"]
        others = [replace(c, token=f"other-{c.token}") for c in claims[:1]]
        assert [o.run_id for o in await store.claim(others, "owner-a")] == [None]
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
        await asyncio.sleep(CHECK_IDLE + 0.2)
        assert await store.list_jobs() == []  # the other pooled ones were dropped too: checked
        with postgres_server.connect("postgres") as admin:  # and again
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
        await asyncio.sleep(CHECK_IDLE + 0.2)
        assert await store.list_jobs() == []  # a dropped idle connection is not handed out
    finally:
        await store.close()


async def test_a_claim_commits_without_waiting_for_its_callers_event_loop(
    postgres_url: str,
) -> None:
    """Another node claiming the same firing must not wait while this node's event loop
    is busy elsewhere (it was: the claim's COMMIT waited for the loop)."""
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    try:
        with (
            psycopg.connect(postgres_url) as blocker,
            psycopg.connect(postgres_url, autocommit=True) as other,
        ):
            blocker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
            claiming = asyncio.create_task(
                store.claim([Claim("job", NOW, Trigger.SCHEDULE, token="a")], "owner-a")
            )
            while not _waiting_for_a_lock(other):
                await asyncio.sleep(0.01)
            # From here on this test's event loop - the claiming node's - is held busy.
            blocker.commit()
            deadline = time.monotonic() + 10
            while not (_claimed_row(other) or _open_claim(other)):
                assert time.monotonic() < deadline, "the claim never got the table"
                time.sleep(0.01)
            other.execute("SET statement_timeout = '2s'")
            taken = other.execute(
                "INSERT INTO runs (job, trigger, scheduled_at, attempt, status) "
                "VALUES ('job', 'schedule', %s, 1, 'running') ON CONFLICT DO NOTHING "
                "RETURNING id",
                (NOW,),
            ).fetchone()
            assert taken is None  # the key was the first node's, committed, at once
        (claimed,) = await claiming
        assert claimed.owned
    finally:
        await store.close()


def _waiting_for_a_lock(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'evercron' "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
    )


def _claimed_row(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    return bool(conn.execute("SELECT 1 FROM runs WHERE claim_token = 'a'").fetchone())


def _open_claim(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'evercron' "
            "AND state = 'idle in transaction'"
        ).fetchone()
    )


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


def node(name: str, lease: float = 30.0, home: str | None = None) -> NodeInfo:
    return NodeInfo(name, home or f"home-of-{name}", f"owner-{name}", (), "1", 1, lease)


async def wait_until_expired(store: PostgresStore, name: str) -> None:
    for _ in range(200):
        if [n.state for n in await store.nodes() if n.name == name] == [NodeState.EXPIRED]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"node {name} did not expire")


async def test_an_expired_node_s_runs_are_lost_once_and_retried_by_the_reaper(
    postgres_url: str,
) -> None:
    a, b = PostgresStore(postgres_url, node="a"), PostgresStore(postgres_url, node="b")
    await a.migrate()
    try:
        await a.join(node("a", lease=0.5))
        await b.join(node("b"))
        (kept,) = await a.claim([Claim("retried", NOW, Trigger.SCHEDULE)], "owner-a")
        (plain,) = await a.claim([Claim("plain", NOW, Trigger.SCHEDULE)], "owner-a")
        assert kept.run_id is not None and plain.run_id is not None
        assert await b.reap(0.2, {"retried": 1}, "owner-b") == []  # not expired yet
        await wait_until_expired(b, "a")
        await asyncio.sleep(0.3)  # and the grace
        lost = await b.reap(0.2, {"retried": 1}, "owner-b")
        assert sorted(r.run.id for r in lost) == sorted([kept.run_id, plain.run_id])
        assert await b.reap(0.2, {"retried": 1}, "owner-b") == []  # never twice
        (retry,) = [r.retry for r in lost if r.run.job == "retried"]
        assert retry is not None and retry.owned
        again = await b.get_run(retry.run_id or 0)
        assert again is not None
        assert (again.attempt, again.trigger, again.node, again.retry_of) == (
            2,
            Trigger.RETRY,
            "b",
            kept.run_id,
        )
        gone = await b.get_run(kept.run_id)
        assert gone is not None and gone.status is RunStatus.LOST
        assert "node a stopped renewing its lease" in (gone.error or "")
        late = RunEnd(RunStatus.SUCCEEDED, NOW)
        assert not await a.finish(kept.run_id, late, kept.fence)  # the late result
    finally:
        await a.close()
        await b.close()


async def test_nothing_is_reaped_within_a_lease_of_a_database_restart(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    a, b = PostgresStore(postgres_url, node="a"), PostgresStore(postgres_url, node="b")
    await a.migrate()
    try:
        await a.join(node("a", lease=2.0))
        await a.claim([Claim("job", NOW, Trigger.SCHEDULE)], "owner-a")
        await asyncio.sleep(2.5)  # a's lease ran out
        postgres_server.restart_immediately()
        assert await b.reap(0.0, {}, "owner-b") == []  # a gets a lease to renew first
        assert await a.renew(node("a", lease=2.0)) is not None
        await asyncio.sleep(2.2)
        assert len(await b.reap(0.0, {}, "owner-b")) == 1
    finally:
        await a.close()
        await b.close()


async def test_a_node_name_is_one_node_s_while_it_lives(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    try:
        await store.join(node("a", lease=0.5))
        with pytest.raises(StoreError, match='node name "a" is in use'):
            await store.join(node("a", home="elsewhere"))
        assert await store.renew(node("a", home="elsewhere")) is None
        await store.join(node("a", lease=0.5))  # the same home: a restart, welcome
        await wait_until_expired(store, "a")
        await store.join(node("a", home="elsewhere"))  # the old one is gone: taken over
        assert await store.renew(node("a", lease=0.5)) is None
    finally:
        await store.close()


async def test_a_node_leaves_only_without_running_runs(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    try:
        await store.join(node("a"))
        (claimed,) = await store.claim([Claim("job", NOW, Trigger.SCHEDULE)], "owner-a")
        assert claimed.run_id is not None
        assert not await store.leave(node("a"))
        await store.finish(claimed.run_id, RunEnd(RunStatus.SUCCEEDED, NOW))
        assert await store.leave(node("a"))
        assert [n.state for n in await store.nodes()] == [NodeState.LEFT]
    finally:
        await store.close()


async def test_hints_reach_other_nodes(postgres_url: str) -> None:
    a, b = PostgresStore(postgres_url, node="a"), PostgresStore(postgres_url, node="b")
    await a.migrate()
    heard: list[tuple[str, str]] = []
    listening = asyncio.ensure_future(b.listen(lambda *hint: heard.append(hint)))
    try:
        while not heard:
            await asyncio.sleep(0.01)
        await a.put_job(Job.from_mapping({"name": "j", "schedule": "@daily", "command": "x"}), NOW)
        await a.set_paused("j", True)
        await a.join(node("a"))
        for _ in range(200):
            if len(heard) >= 4:
                break
            await asyncio.sleep(0.01)
        assert heard == [("resync", ""), ("job", "j"), ("job", "j"), ("node", "a")]
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await a.close()
        await b.close()


async def test_files_of_live_nodes_decide_and_disagreements_show(postgres_url: str) -> None:
    a, b = PostgresStore(postgres_url, node="a"), PostgresStore(postgres_url, node="b")
    await a.migrate()

    def job(name: str, command: str) -> Job:
        return Job.from_mapping(
            {"name": name, "schedule": "@daily", "command": command}, source="/etc/e.toml"
        )

    try:
        await a.join(node("a"))
        await b.join(node("b"))
        assert await a.reconcile_jobs([job("shared", "v1"), job("only-a", "x")], NOW) == [
            "shared",
            "only-a",
        ]
        assert await b.reconcile_jobs([job("shared", "v2")], NOW) == ["shared"]  # b wins
        stored = await a.get_job("shared")
        assert stored is not None and stored.job.command == "v2"
        assert [s.job.name for s in await a.list_jobs()] == ["only-a", "shared"]  # a's stays
        (seen,) = await a.disagreements()
        assert (seen.job, seen.node, seen.applied_by) == ("shared", "a", "b")
        assert await b.reconcile_jobs([], NOW) == ["shared"]  # a still defines it: a's now
        stored = await a.get_job("shared")
        assert stored is not None and stored.job.command == "v1"
        assert await a.disagreements() == []
        assert sorted(await a.reconcile_jobs([], NOW)) == ["only-a", "shared"]
        assert await a.list_jobs() == []
    finally:
        await a.close()
        await b.close()


async def test_nodes_booted_together_keep_boot_times_of_their_own(postgres_url: str) -> None:
    a, b = PostgresStore(postgres_url, node="a"), PostgresStore(postgres_url, node="b")
    await a.migrate()
    try:
        first = await a.boot_time("boot-1", NOW)
        other = await b.boot_time("boot-2", NOW)  # another machine, booted the same second
        assert first == NOW and other > NOW
        assert await b.boot_time("boot-2", NOW + dt.timedelta(seconds=5)) == other
    finally:
        await a.close()
        await b.close()


async def test_the_same_jobs_from_files_elsewhere_change_nothing(postgres_url: str) -> None:
    a, b = PostgresStore(postgres_url, node="a"), PostgresStore(postgres_url, node="b")
    await a.migrate()

    def job(source: str) -> Job:
        return Job.from_mapping({"name": "j", "schedule": "@daily", "command": "x"}, source=source)

    try:
        await a.join(node("a"))
        await b.join(node("b"))
        assert await a.reconcile_jobs([job("/etc/a/evercron.toml")], NOW) == ["j"]
        assert await b.reconcile_jobs([job("/srv/b/evercron.toml")], NOW) == []
        assert await b.disagreements() == []
    finally:
        await a.close()
        await b.close()


async def test_nodes_claiming_the_same_second_in_other_orders_never_deadlock(
    postgres_url: str,
) -> None:
    nodes = [PostgresStore(postgres_url, node=f"n{n}") for n in range(3)]
    await nodes[0].migrate()
    try:
        for second in range(10):
            at = NOW + dt.timedelta(seconds=second)
            claims = [Claim(f"job-{n}", at, Trigger.SCHEDULE) for n in range(3000)]
            orders = [claims, claims[::-1], claims[1500:] + claims[:1500]]
            outcomes = await asyncio.gather(
                *(node.claim(order, f"owner-{n}") for n, (node, order) in
                  enumerate(zip(nodes, orders, strict=True)))
            )  # fmt: skip
            owned = [o.run_id for found in outcomes for o in found if o.run_id is not None]
            assert len(owned) == len(set(owned)) == 3000
    finally:
        for node in nodes:
            await node.close()


async def test_nodes_racing_to_fan_out_and_take_deliveries_each_get_different_ones(
    postgres_url: str,
) -> None:
    nodes = [PostgresStore(postgres_url, node=f"n{n}") for n in range(4)]
    await nodes[0].migrate()
    try:
        await nodes[0].want_events(EventPolicy(frozenset({NotifyEvent.FAILED})))
        for _ in range(100):
            (claimed,) = await nodes[0].claim([Claim("j", NOW, Trigger.MANUAL)], "o")
            assert claimed.run_id is not None
            await nodes[0].finish(claimed.run_id, RunEnd(RunStatus.FAILED, NOW))
        events = await nodes[0].undispatched_events(1000)
        assert len(events) == 100
        channel = (ChannelQuota("a", 1000),)
        fan_outs = [FanOut(e.id, channel) for e in events]
        made = await asyncio.gather(*(node.dispatch_events(fan_outs, NOW) for node in nodes))
        assert sum(len(m) for m in made) == 100  # one delivery per event and channel

        async def take(node: PostgresStore, owner: str) -> list[int]:
            mine: list[int] = []
            while batch := await node.claim_deliveries(owner, lease=60, limit=7):
                mine.extend(d.id for d in batch)
            return mine

        taken = await asyncio.gather(*(take(node, f"p{n}") for n, node in enumerate(nodes)))
        everything = [i for ids in taken for i in ids]
        assert len(everything) == len(set(everything)) == 100
    finally:
        for node in nodes:
            await node.close()


async def test_a_listing_reads_back_only_the_rows_that_changed(postgres_url: str) -> None:
    """Each node re-lists every job every few seconds: rows unchanged since the last
    listing are not parsed again, and a changed, added or removed row is seen."""
    store = PostgresStore(postgres_url, node="a")
    await store.migrate()
    try:
        for name in ("a", "b"):
            job = Job.from_mapping({"name": name, "schedule": "@hourly", "command": "true"})
            await store.put_job(job, NOW)
        first = {s.job.name: s for s in await store.list_jobs()}
        await store.set_paused("b", True)
        await store.put_job(
            Job.from_mapping({"name": "c", "schedule": "@daily", "command": "true"}), NOW
        )
        second = {s.job.name: s for s in await store.list_jobs()}
        assert second["a"] is first["a"]  # unchanged: the same record, not parsed again
        assert second["b"] is not first["b"] and second["b"].paused
        assert sorted(second) == ["a", "b", "c"]
        assert await store.delete_job("a")
        assert sorted(s.job.name for s in await store.list_jobs()) == ["b", "c"]
    finally:
        await store.close()
