"""The SQLite backend on real files: what the contract suite cannot say of every backend
(competing processes, the file's mode, the stored time text, real faults)."""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pytest

from evercron.model import NotifyEvent, RunStatus, Trigger
from evercron.store import (
    ChannelQuota,
    Claim,
    EventPolicy,
    FanOut,
    RunEnd,
    StoreError,
    StoreUnavailable,
)
from evercron.store.sqlite import SqliteStore
from evercron.store.sqlite_database import from_text, to_text

NOW = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


async def _opened(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.migrate()
    return store


def _claim_all(path: str, owner: str, firings: int, results: multiprocessing.Queue) -> None:
    """Claim `firings` minutes of one job: odd workers one at a time, even ones in
    batches of ten (as the scheduler claims a second's due firings)."""

    async def claim() -> list[int]:
        store = SqliteStore(path)
        at = [NOW + dt.timedelta(minutes=minute) for minute in range(firings)]
        step = 1 if int(owner[1:]) % 2 else 10
        won = []
        for first in range(0, firings, step):
            claims = [Claim("job", when, Trigger.SCHEDULE) for when in at[first : first + step]]
            outcomes = await store.claim(claims, owner)
            won += [first + i for i, o in enumerate(outcomes) if o.run_id is not None]
        await store.close()
        return won

    results.put(asyncio.run(claim()))


def test_competing_processes_claim_each_firing_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    asyncio.run(_close_after(_opened(path)))
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    workers = [
        context.Process(target=_claim_all, args=(str(path), f"o{i}", 200, results))
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    won = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    claimed = sorted(minute for batch in won for minute in batch)
    assert claimed == list(range(200))


async def _close_after(opening: object) -> None:
    store = await opening  # type: ignore[misc]
    await store.close()


def test_the_files_are_private_whatever_the_directory_mode(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    path = state / "evercron.db"

    async def use() -> None:
        store = await _opened(path)
        await store.claim([Claim("j", NOW, Trigger.SCHEDULE)], "o")
        await store.close()

    old_umask = os.umask(0o022)
    try:
        asyncio.run(use())
    finally:
        os.umask(old_umask)
    for name in ("evercron.db", "evercron.db-wal", "evercron.db-shm"):
        if (state / name).exists():
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name


def test_an_existing_readable_store_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "evercron.db"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    asyncio.run(_close_after(_opened(path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_job_row_that_cannot_be_read_does_not_break_the_listing(tmp_path: Path) -> None:
    path = tmp_path / "evercron.db"

    async def check() -> None:
        store = await _opened(path)
        with sqlite3.connect(path) as db:
            db.execute(
                'INSERT INTO jobs VALUES (\'bad\', \'{"name": "bad", "schedule": "nope"}\', '
                "'api', 0, '2024-05-01T12:00:00.000000Z', '2024-05-01T12:00:00.000000Z')"
            )
        assert await store.list_jobs() == []
        (broken,) = await store.broken_jobs()
        assert broken.name == "bad" and "schedule" in broken.error
        assert await store.get_job("bad") is None
        await store.close()

    asyncio.run(check())


def test_a_store_locked_by_another_process_is_unavailable_then_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real second process holds the write lock: writes fail as passing (nothing
    committed), reads still work, and writes succeed once the lock is gone."""
    monkeypatch.setattr("evercron.store.sqlite_database.BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "evercron.db"
    holder_code = (
        "import sqlite3, sys, time\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "db.execute('ROLLBACK')\n"
    )

    async def check() -> None:
        store = await _opened(path)
        (first,) = await store.claim([Claim("j", NOW, Trigger.SCHEDULE)], "o")
        holder = subprocess.Popen(
            [sys.executable, "-c", holder_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
            with pytest.raises(StoreUnavailable):
                await store.claim(
                    [Claim("j", NOW + dt.timedelta(minutes=1), Trigger.SCHEDULE)], "o"
                )
            assert (await store.get_run(first.run_id or 0)) is not None  # reads still work
        finally:
            assert holder.stdin is not None
            holder.stdin.write(b"\n")
            holder.stdin.close()
            holder.wait(timeout=30)
        (later,) = await store.claim(
            [Claim("j", NOW + dt.timedelta(minutes=1), Trigger.SCHEDULE)], "o"
        )
        assert later.owned
        assert await store.finish(first.run_id or 0, RunEnd(RunStatus.SUCCEEDED, NOW))
        await store.close()

    asyncio.run(check())


def test_store_contracted_past_this_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    asyncio.run(_close_after(_opened(path)))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 999, oldest_reader = 998")
    with pytest.raises(StoreError, match="newer than this evercron can read"):
        asyncio.run(_close_after(_opened(path)))


def test_stored_times_are_utc_text_that_sorts_and_reads_back() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    moments = [
        dt.datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 4, 0, tzinfo=paris),  # just after the spring gap
        dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=paris),  # the second 02:30
        dt.datetime(2027, 1, 1, 0, 0, 0, 5, tzinfo=dt.UTC),
    ]
    texts = [to_text(moment) for moment in moments]
    assert texts[0] == "2026-03-29T01:59:59.999999Z"
    assert texts[1] == "2026-03-29T02:00:00.000000Z"
    assert texts[2] == "2026-10-25T01:30:00.000000Z"
    assert texts == sorted(texts)
    for moment, text in zip(moments, texts, strict=True):
        read = from_text(text)  # (== across zones is False for a time in a fold: PEP 495)
        assert read is not None and read.timestamp() == moment.timestamp()
        assert read.utcoffset() == dt.timedelta(0)
    assert from_text("2026-11-27T15:04:05.123Z") == dt.datetime(
        2026, 11, 27, 15, 4, 5, 123000, tzinfo=dt.UTC
    )
    assert from_text(None) is None


def test_an_event_is_written_in_the_transaction_of_its_fact(tmp_path: Path) -> None:
    """When the event cannot be written, neither is the result it reports."""
    path = tmp_path / "evercron.db"

    async def check() -> None:
        store = await _opened(path)
        await store.want_events(EventPolicy(frozenset(NotifyEvent)))
        (claimed,) = await store.claim([Claim("j", NOW, Trigger.MANUAL)], "o")
        assert claimed.run_id is not None
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON notify_events "
                "BEGIN SELECT RAISE(ABORT, 'no room for events'); END"
            )
        with pytest.raises(StoreError, match="no room for events"):
            await store.finish(claimed.run_id, RunEnd(RunStatus.FAILED, NOW, exit_code=1))
        run = await store.get_run(claimed.run_id)
        assert run is not None and run.status is RunStatus.RUNNING
        skip = Claim("j", NOW, Trigger.SCHEDULE, skip_reason="missed")
        with pytest.raises(StoreError, match="no room for events"):
            await store.claim([skip], "o")
        assert await store.last_scheduled("j") is None  # the skipped row is not there
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER refuse")
        assert await store.finish(claimed.run_id, RunEnd(RunStatus.FAILED, NOW, exit_code=1))
        assert [e.kind for e in await store.undispatched_events()] == [NotifyEvent.FAILED]
        await store.close()

    asyncio.run(check())


def test_processes_racing_for_deliveries_each_get_different_ones(tmp_path: Path) -> None:
    """Four stores on one file (each its own connection and thread, as daemon processes
    are) claim deliveries side by side: each delivery goes to exactly one."""
    path = tmp_path / "evercron.db"

    async def take(owner: str) -> list[int]:
        store = SqliteStore(path)
        mine: list[int] = []
        while batch := await store.claim_deliveries(owner, lease=60, limit=7):
            mine.extend(d.id for d in batch)
        await store.close()
        return mine

    async def check() -> None:
        store = await _opened(path)
        await store.want_events(EventPolicy(frozenset({NotifyEvent.FAILED})))
        for _ in range(200):
            (claimed,) = await store.claim([Claim("j", NOW, Trigger.MANUAL)], "o")
            assert claimed.run_id is not None
            await store.finish(claimed.run_id, RunEnd(RunStatus.FAILED, NOW))
        channel = (ChannelQuota("a", 1000),)
        fan_outs = [FanOut(e.id, channel) for e in await store.undispatched_events(1000)]
        await store.dispatch_events(fan_outs, NOW)
        taken = await asyncio.gather(*(take(f"p{n}") for n in range(4)))
        everything = [i for ids in taken for i in ids]
        assert len(everything) == len(set(everything)) == 200
        await store.close()

    asyncio.run(check())


def test_results_written_together_each_get_their_own_answer(tmp_path: Path) -> None:
    """Starts and results made together travel to the store's thread as one call; each
    caller still gets its own answer, a cancelled caller takes nobody's
    answer with it, and a result for a run that is not running is refused alone."""

    async def scenario() -> None:
        store = await _opened(tmp_path / "evercron.db")
        claims = [Claim(f"job{n}", NOW, Trigger.SCHEDULE) for n in range(20)]
        ids = [o.run_id for o in await store.claim(claims, "a")]
        assert None not in ids
        await asyncio.gather(*(store.mark_started(i, 100 + n, None, NOW) for n, i in
                               enumerate(ids) if i is not None))  # fmt: skip
        end = RunEnd(RunStatus.SUCCEEDED, NOW, exit_code=0)
        cancelled = asyncio.ensure_future(store.finish(ids[0] or 0, end))
        answers = asyncio.gather(
            *(store.finish(i or 0, end) for i in ids[1:]), store.finish(ids[1] or 0, end)
        )
        cancelled.cancel()
        assert await answers == [True] * 19 + [False]  # the second result of one run
        finished = [await store.get_run(i or 0) for i in ids]
        assert [r.status if r else None for r in finished[1:]] == [RunStatus.SUCCEEDED] * 19
        assert [r.pid if r else None for r in finished] == list(range(100, 120))
        await store.close()

    asyncio.run(scenario())
