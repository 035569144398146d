"""`evercron migrate-store --to`: a single node's history moves into PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from evercron.model import Job, RunStatus, Trigger
from evercron.store import Claim, RunEnd, RunQuery, StoredChunk
from evercron.store.postgres import PostgresStore
from evercron.store.sqlite import SqliteStore
from tests.helpers import run_cli

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def make_history(state: Path, start: dt.datetime = NOW) -> list[int]:
    async def go() -> list[int]:
        store = SqliteStore(state / "evercron.db", node="old")
        await store.migrate()
        job = Job.from_mapping({"name": "nightly", "schedule": "@daily", "command": "x"})
        await store.put_job(job, NOW)
        await store.set_paused("nightly", True)
        ids = []
        for day in range(3):
            at = start + dt.timedelta(days=day)
            (claimed,) = await store.claim([Claim("nightly", at, Trigger.SCHEDULE)], "o")
            assert claimed.run_id is not None
            ids.append(claimed.run_id)
            await store.append_output(claimed.run_id, [StoredChunk(0, "stdout", 1.0, b"day")])
            if day < 2:
                await store.finish(claimed.run_id, RunEnd(RunStatus.SUCCEEDED, at))
        await store.close()
        return ids

    state.mkdir()
    return asyncio.run(go())


def test_history_moves_with_its_ids_and_a_second_move_needs_merge(
    tmp_path: Path, postgres_url: str
) -> None:
    ids = make_history(tmp_path / "state")
    moved = run_cli("migrate-store", "--to", postgres_url, "--state-dir", str(tmp_path / "state"))
    assert moved.returncode == 0, moved.stderr
    assert "runs: 3/3" in moved.stderr and "moved 1 job(s), 3 run(s)" in moved.stdout

    async def look() -> None:
        store = PostgresStore(postgres_url)
        try:
            (job,) = await store.list_jobs()
            assert job.job.name == "nightly" and job.paused
            runs = await store.list_runs(RunQuery())
            assert sorted(r.id for r in runs) == ids
            assert runs[0].status is RunStatus.LOST  # it was left running
            assert [c.data for c in await store.read_output(ids[0])] == [b"day"]
            (fresh,) = await store.claim([Claim("nightly", NOW, Trigger.MANUAL)], "o")
            assert fresh.run_id is not None and fresh.run_id > max(ids)
        finally:
            await store.close()

    asyncio.run(look())
    again = run_cli("migrate-store", "--to", postgres_url, "--state-dir", str(tmp_path / "state"))
    assert again.returncode == 1 and "--merge" in again.stderr
    twice = run_cli(
        "migrate-store", "--to", postgres_url, "--state-dir", str(tmp_path / "state"), "--merge"
    )
    assert twice.returncode == 1 and "moved before?" in twice.stderr
    make_history(tmp_path / "other", NOW + dt.timedelta(days=30))
    merged = run_cli(
        "migrate-store", "--to", postgres_url, "--state-dir", str(tmp_path / "other"), "--merge"
    )
    assert merged.returncode == 0, merged.stderr
    assert "1 kept the database's definition), 3 run(s)" in merged.stdout
