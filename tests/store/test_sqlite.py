"""The SQLite store on real files: claims, runs, output, schema, retention."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3
import zoneinfo
from pathlib import Path

import pytest

from evercron.model import Job, RunStatus, Trigger
from evercron.store import SqliteStore, StoredChunk, StoreError
from evercron.store.sqlite import from_text, to_text

NOW = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    opened = SqliteStore(tmp_path / "evercron.db")
    opened.migrate()
    return opened


def a_job(name: str = "backup", **extra: object) -> Job:
    return Job.from_mapping({"name": name, "schedule": "*/5 * * * *", "command": "true", **extra})


class TestJobs:
    def test_put_get_list_delete(self, store: SqliteStore) -> None:
        assert store.put_job(a_job(timeout="90s", env={"A": "1"}), NOW) is True
        assert store.put_job(a_job(timeout="2m"), NOW + dt.timedelta(seconds=1)) is False
        stored = store.get_job("backup")
        assert stored is not None
        assert stored.job.timeout == 120 and stored.job.env == {}
        assert stored.created_at == NOW and stored.updated_at > NOW
        store.put_job(a_job("another"), NOW)
        assert [s.job.name for s in store.list_jobs()] == ["another", "backup"]
        assert store.delete_job("backup") is True
        assert store.delete_job("backup") is False
        assert store.get_job("backup") is None

    def test_pause_survives_an_update(self, store: SqliteStore) -> None:
        store.put_job(a_job(), NOW)
        assert store.set_paused("backup", True)
        store.put_job(a_job(description="changed"), NOW)
        stored = store.get_job("backup")
        assert stored is not None and stored.paused and stored.job.description == "changed"
        assert store.set_paused("missing", True) is False


class TestClaims:
    def test_a_firing_is_claimed_once(self, store: SqliteStore) -> None:
        first = store.claim("backup", NOW, Trigger.SCHEDULE, "owner-a")
        assert first is not None
        assert store.claim("backup", NOW, Trigger.SCHEDULE, "owner-b") is None
        assert store.claim("backup", NOW, Trigger.RETRY, "owner-b", attempt=2) is not None
        assert store.claim("other", NOW, Trigger.SCHEDULE, "owner-b") is not None

    def test_many_scheduled_firings_are_claimed_at_once(self, store: SqliteStore) -> None:
        taken = store.claim("b", NOW, Trigger.SCHEDULE, "owner-a")
        firings = [("a", NOW), ("b", NOW), ("c", NOW), ("a", NOW + dt.timedelta(seconds=1))]
        ids = store.claim_scheduled(firings, "owner-b")
        assert ids[1] is None  # claimed already: the same rule as one claim at a time
        assert None not in (ids[0], ids[2], ids[3]) and len({ids[0], ids[2], ids[3]}) == 3
        assert store.claim_scheduled(firings, "owner-c") == [None, None, None, None]
        for (job, scheduled_at), run_id in zip(firings, ids, strict=True):
            if run_id is None:
                continue
            run = store.get_run(run_id)
            assert run is not None and run.id != taken
            assert (run.job, run.scheduled_at, run.trigger) == (job, scheduled_at, Trigger.SCHEDULE)
            assert (run.status, run.attempt, run.owner) == (RunStatus.RUNNING, 1, "owner-b")

    def test_manual_runs_never_collide(self, store: SqliteStore) -> None:
        ids = {store.claim("backup", NOW, Trigger.MANUAL, "a") for _ in range(3)}
        assert None not in ids and len(ids) == 3

    def test_run_ids_are_never_reused(self, store: SqliteStore) -> None:
        first = store.claim("backup", NOW, Trigger.SCHEDULE, "a")
        assert first is not None
        store.prune(0, NOW + dt.timedelta(days=1))
        store.finish(first, RunStatus.SUCCEEDED, NOW)
        store.prune(0, NOW + dt.timedelta(days=1))
        assert store.get_run(first) is None
        second = store.claim("backup", NOW + dt.timedelta(minutes=5), Trigger.SCHEDULE, "a")
        assert second is not None and second > first

    def test_run_lifecycle(self, store: SqliteStore) -> None:
        run_id = store.claim("backup", NOW, Trigger.SCHEDULE, "owner-a")
        assert run_id is not None
        store.mark_started(run_id, 4242, 123, NOW)
        running = store.running("owner-a")
        assert [(r.id, ticks) for r, ticks in running] == [(run_id, 123)]
        store.finish(
            run_id,
            RunStatus.FAILED,
            NOW + dt.timedelta(seconds=3),
            exit_code=2,
            cpu_user=0.5,
            cpu_system=0.25,
            max_rss_kb=1000,
            output_bytes=10,
            output_truncated=True,
            error="boom",
        )
        run = store.get_run(run_id)
        assert run is not None
        assert (run.status, run.exit_code, run.pid, run.error) == (
            RunStatus.FAILED,
            2,
            4242,
            "boom",
        )
        assert run.output_truncated and run.output_bytes == 10
        assert run.finished_at == NOW + dt.timedelta(seconds=3)
        assert store.running() == []

    def test_skipped_runs_are_recorded_finished(self, store: SqliteStore) -> None:
        run_id = store.claim(
            "backup",
            NOW,
            Trigger.SCHEDULE,
            "a",
            status=RunStatus.SKIPPED,
            error="concurrency=forbid: run 1 is still running",
        )
        run = store.get_run(run_id or 0)
        assert run is not None and run.status is RunStatus.SKIPPED
        assert run.finished_at is not None and "forbid" in (run.error or "")

    def test_list_filters_newest_first(self, store: SqliteStore) -> None:
        for minute in range(5):
            run_id = store.claim(
                "a" if minute % 2 else "b",
                NOW + dt.timedelta(minutes=minute),
                Trigger.SCHEDULE,
                "o",
            )
            assert run_id is not None
            if minute < 3:
                store.finish(run_id, RunStatus.SUCCEEDED, NOW)
        assert [r.job for r in store.list_runs()] == ["b", "a", "b", "a", "b"]
        assert len(store.list_runs(job="a")) == 2
        assert len(store.list_runs(status=RunStatus.RUNNING)) == 2
        assert len(store.list_runs(limit=2)) == 2

    def test_list_pages_by_id_and_filters_by_time_and_original(self, store: SqliteStore) -> None:
        ids = [
            store.claim("a", NOW + dt.timedelta(minutes=minute), Trigger.SCHEDULE, "o")
            for minute in range(6)
        ]
        retry = store.claim("a", NOW, Trigger.RETRY, "o", attempt=2, retry_of=ids[0])
        assert None not in ids and retry is not None
        pages, before = [], None
        while page := [r.id for r in store.list_runs(limit=3, before=before)]:
            pages.append(page)
            before = page[-1]
        assert pages == [[retry, ids[5], ids[4]], [ids[3], ids[2], ids[1]], [ids[0]]]
        since, until = NOW + dt.timedelta(minutes=2), NOW + dt.timedelta(minutes=4)
        window = store.list_runs(since=since, until=until)
        assert [r.id for r in window] == [ids[3], ids[2]]  # until is exclusive
        berlin = since.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
        assert [r.id for r in store.list_runs(since=berlin, until=until)] == [ids[3], ids[2]]
        assert [r.id for r in store.list_runs(retry_of=ids[0])] == [retry]

    def test_latest_runs_of_every_job(self, store: SqliteStore) -> None:
        for name in ("a", "b", "idle"):
            store.put_job(a_job(name), NOW)
        claimed = {
            name: [
                store.claim(name, NOW + dt.timedelta(minutes=m), Trigger.SCHEDULE, "o")
                for m in range(4)
            ]
            for name in ("a", "b", "gone")  # "gone" has runs but no job any more
        }
        last = claimed["a"][-1]
        assert last is not None
        start = NOW + dt.timedelta(minutes=3, seconds=1)
        store.mark_started(last, 1, 1, start)
        store.finish(last, RunStatus.FAILED, start + dt.timedelta(seconds=2.5), exit_code=1)
        latest = store.latest_runs(3)
        assert list(latest) == ["a", "b", "idle"]
        assert [r.id for r in latest["a"]] == claimed["a"][:0:-1]
        assert [r.id for r in latest["b"]] == claimed["b"][:0:-1]
        assert latest["idle"] == []
        newest = latest["a"][0]
        assert (newest.status, newest.duration) == (RunStatus.FAILED, 2.5)
        assert newest.scheduled_at == NOW + dt.timedelta(minutes=3)
        assert latest["a"][1].duration is None  # not ended
        assert store.job_counts() == (3, 0)
        store.set_paused("b", True)
        assert store.job_counts() == (3, 1)

    def test_last_scheduled_ignores_manual_runs(self, store: SqliteStore) -> None:
        assert store.last_scheduled("backup") is None
        store.claim("backup", NOW, Trigger.SCHEDULE, "a")
        store.claim("backup", NOW + dt.timedelta(hours=1), Trigger.MANUAL, "a")
        assert store.last_scheduled("backup") == NOW


def _claim_all(path: str, owner: str, firings: int, results: multiprocessing.Queue) -> None:
    """Claim `firings` minutes of one job: odd workers one at a time, even ones in
    batches of ten (as the scheduler claims a second's due firings)."""
    store = SqliteStore(path)
    at = [NOW + dt.timedelta(minutes=minute) for minute in range(firings)]
    if int(owner[1:]) % 2:
        won = [m for m in range(firings) if store.claim("job", at[m], Trigger.SCHEDULE, owner)]
    else:
        won = []
        for first in range(0, firings, 10):
            batch = [("job", when) for when in at[first : first + 10]]
            ids = store.claim_scheduled(batch, owner)
            won += [first + i for i, run_id in enumerate(ids) if run_id is not None]
    results.put(won)


def test_competing_processes_claim_each_firing_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SqliteStore(path).migrate()
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


class TestOutputAndSchema:
    def test_output_in_order_and_resumable(self, store: SqliteStore) -> None:
        store.append_output(
            7, [StoredChunk(0, "stdout", 1.0, b"ab"), StoredChunk(2, "stderr", 1.5, b"c")]
        )
        store.append_output(
            7,
            [
                StoredChunk(2, "stderr", 1.5, b"c"),  # a repeat is ignored
                StoredChunk(3, "stdout", 2.0, b"\xff\x00"),
            ],
        )
        assert [c.data for c in store.read_output(7)] == [b"ab", b"c", b"\xff\x00"]
        assert [c.offset for c in store.read_output(7, after=0)] == [2, 3]

    def test_the_tail_starts_at_the_chunk_holding_its_first_byte(self, store: SqliteStore) -> None:
        assert store.tail_start(8, 10) == 0  # no output
        # 0-9 kept, 10-99 dropped (max_output), 100-119 kept.
        store.append_output(
            8,
            [
                StoredChunk(0, "stdout", 1.0, b"a" * 10),
                StoredChunk(100, "stdout", 2.0, b"b" * 10),
                StoredChunk(110, "stderr", 2.0, b"c" * 10),
            ],
        )
        assert [store.tail_start(8, n) for n in (1, 10, 11, 20, 21, 119, 120, 500)] == [
            *(110, 110, 100, 100, 0, 0, 0, 0)
        ]

    def test_migrate_is_idempotent(self, store: SqliteStore) -> None:
        assert store.migrate() == store.migrate()

    def test_store_contracted_past_this_release_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "future.db"
        SqliteStore(path).migrate()
        with sqlite3.connect(path) as db:
            db.execute("UPDATE schema_version SET version = 999, oldest_reader = 998")
        with pytest.raises(StoreError, match="newer than this evercron can read"):
            SqliteStore(path).migrate()

    def test_prune_keeps_recent_and_running(self, store: SqliteStore) -> None:
        ids = []
        for minute in range(6):
            run_id = store.claim("a", NOW + dt.timedelta(minutes=minute), Trigger.SCHEDULE, "o")
            assert run_id is not None
            ids.append(run_id)
            if minute != 0:
                store.finish(run_id, RunStatus.SUCCEEDED, NOW)
            store.append_output(run_id, [StoredChunk(0, "stdout", 1.0, b"x")])
        assert store.prune(2, NOW + dt.timedelta(days=1)) == 3
        assert sorted(r.id for r in store.list_runs()) == [ids[0], ids[4], ids[5]]
        assert store.read_output(ids[1]) == []


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
