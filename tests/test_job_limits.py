"""The job settings `max_processes` and `max_memory`: defaults, spellings, messages."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from evercron.model import Job, JobError
from evercron.store.sqlite import SqliteStore

BASE = {"name": "j", "schedule": "@daily", "command": "true"}


def test_every_job_is_capped_at_4096_processes_and_no_memory_by_default() -> None:
    job = Job.from_mapping(BASE)
    assert (job.max_processes, job.max_memory) == (4096, None)
    assert job.to_mapping()["max_processes"] == 4096
    assert job.to_mapping()["max_memory"] is None


@pytest.mark.parametrize(
    ("given", "memory"),
    [("512MiB", 512 << 20), ("1GiB", 1 << 30), ("10MB", 10_000_000), (1 << 20, 1 << 20)],
)
def test_limits_in_user_spellings_round_trip(given: object, memory: int) -> None:
    job = Job.from_mapping({**BASE, "max_processes": 50, "max_memory": given})
    assert (job.max_processes, job.max_memory) == (50, memory)
    assert Job.from_mapping(job.to_mapping()) == job


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_processes": 0}, "max_processes: expected a whole number from 1 to 4194304"),
        ({"max_processes": 4194305}, "max_processes: expected a whole number from 1"),
        ({"max_processes": 2.5}, "max_processes: expected a whole number"),
        ({"max_processes": "50"}, "max_processes: expected a whole number"),
        ({"max_processes": True}, "max_processes: expected a whole number"),
        ({"max_memory": "lots"}, "max_memory: invalid size 'lots'"),
        ({"max_memory": 1000}, "max_memory: must be at least 1MiB, got 1000 bytes"),
        ({"max_memory": "0"}, "max_memory: must be at least 1MiB"),
        ({"max_memory": False}, "max_memory: expected a size"),
        (
            {"max_memory": 2**63},
            "max_memory: invalid size 9223372036854775808: at most 9223372036854775807 bytes",
        ),
    ],
)
def test_bad_limits_are_refused_naming_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(JobError, match=message.replace("(", r"\(")):
        Job.from_mapping({**BASE, **change})


def test_a_job_that_keeps_the_defaults_is_stored_as_older_releases_read_it(
    tmp_path: Path,
) -> None:
    plain = Job.from_mapping({**BASE, "name": "plain"})
    capped = Job.from_mapping({**BASE, "name": "capped", "max_memory": "64MiB"})

    async def store_and_read() -> list[Job]:
        store = SqliteStore(tmp_path / "evercron.db")
        await store.migrate()
        try:
            for job in (plain, capped):
                await store.put_job(job, dt.datetime.now(dt.UTC))
            return [stored.job for stored in await store.list_jobs()]
        finally:
            await store.close()

    assert asyncio.run(store_and_read()) == [capped, plain]  # read back equal
    with sqlite3.connect(tmp_path / "evercron.db") as db:
        stored = dict(db.execute("SELECT name, definition FROM jobs").fetchall())
    assert not {"max_processes", "max_memory"} & set(json.loads(stored["plain"]))
    assert json.loads(stored["capped"])["max_memory"] == 64 << 20
