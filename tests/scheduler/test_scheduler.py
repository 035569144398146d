"""The scheduler with a real store and real processes (no daemon, no HTTP)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from evercron.model import Job, RunStatus, Trigger
from evercron.process import descriptors
from evercron.process.cgroup import discover
from evercron.scheduler import Scheduler, boot, core
from evercron.store import SqliteStore
from evercron.store.worker import StoreWorker


def make_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    store.migrate()
    return store


def every_second_job(log: Path, **extra: object) -> Job:
    return Job.from_mapping(
        {
            "name": "tick",
            "schedule": "* * * * * * *",
            "concurrency": "allow",
            "command": f'echo "$EVERCRON_SCHEDULED_AT $EVERCRON_RUN_ID $(date +%s.%N)" >> {log}',
            **extra,
        }
    )


async def run_schedulers(store_path: Path, owners: list[str], seconds: float) -> None:
    workers, schedulers, loops = [], [], []
    for owner in owners:
        store = make_store(store_path)
        worker = StoreWorker(store)
        scheduler = Scheduler(store, worker, owner)
        await scheduler.load()
        workers.append(worker)
        schedulers.append(scheduler)
        loops.append(asyncio.create_task(scheduler.run()))
    await asyncio.sleep(seconds)
    for scheduler in schedulers:
        scheduler.stop()
    await asyncio.gather(*loops)
    for scheduler in schedulers:
        await scheduler.launcher.wait_all(10)
    for worker in workers:
        worker.close()


def test_every_second_fires_once_per_second(tmp_path: Path) -> None:
    log = tmp_path / "ticks"
    store = make_store(tmp_path / "db")
    store.put_job(every_second_job(log), dt.datetime.now(dt.UTC))
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 3.6))
    stamps = [line.split()[0] for line in log.read_text().splitlines()]
    counts = Counter(stamps)
    assert len(counts) >= 3 and set(counts.values()) == {1}
    for index, line in enumerate(sorted(log.read_text().splitlines())):
        scheduled, _, ran = line.split()
        lateness = float(ran) - dt.datetime.fromisoformat(scheduled).timestamp()
        assert lateness >= 0, line  # never early
        if index > 0:  # the first may be a firing that passed while the scheduler started
            assert lateness < 0.5, line
    runs = store.list_runs(job="tick")
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    assert sorted(str(r.id) for r in runs) == sorted(
        line.split()[1] for line in log.read_text().splitlines()
    )


@pytest.mark.parametrize("crowd_per_cpu", [0, 100])
def test_a_crowded_instant_runs_its_firings_without_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crowd_per_cpu: int
) -> None:
    # Past `crowded_instant()` firings at one instant, a shell-free command runs at the
    # instant without /bin/sh (so outside any run cgroup); below, behind a waiting shell.
    descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", True)
    monkeypatch.setattr(core, "CROWD_PER_CPU", crowd_per_cpu)
    log = tmp_path / "ticks"
    store = make_store(tmp_path / "db")
    job = {"command": f"cat /proc/self/cgroup >> {log}"}
    store.put_job(every_second_job(log, **job), dt.datetime.now(dt.UTC))
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 2.6))
    unified = [line for line in log.read_text().splitlines() if line.startswith("0::")]
    runs = store.list_runs(job="tick")
    assert len(unified) == len(runs) >= 2
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    in_run_groups = ["evercron-runs" in line for line in unified]
    if crowd_per_cpu == 0:
        assert not any(in_run_groups)
    elif discover() is not None:
        assert all(in_run_groups)


def test_two_schedulers_share_the_work_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "ticks"
    store = make_store(tmp_path / "db")
    store.put_job(every_second_job(log), dt.datetime.now(dt.UTC))
    asyncio.run(run_schedulers(tmp_path / "db", ["a", "b", "c"], 3.6))
    counts = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(counts) >= 3 and set(counts.values()) == {1}
    owners = {r.owner for r in store.list_runs(job="tick")}
    assert owners <= {"a", "b", "c"}


def test_forbid_records_skipped_firings(tmp_path: Path) -> None:
    store = make_store(tmp_path / "db")
    job = Job.from_mapping(
        {
            "name": "slow",
            "schedule": "* * * * * * *",
            "command": "sleep 1.7",
            "concurrency": "forbid",
        }
    )
    store.put_job(job, dt.datetime.now(dt.UTC))
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 3.5))
    statuses = Counter(r.status for r in store.list_runs(job="slow"))
    assert statuses[RunStatus.SKIPPED] >= 1
    assert statuses[RunStatus.SUCCEEDED] >= 1
    skipped = store.list_runs(job="slow", status=RunStatus.SKIPPED)[0]
    assert "concurrency=forbid" in (skipped.error or "")


def test_misfire_run_once_after_downtime(tmp_path: Path) -> None:
    store = make_store(tmp_path / "db")
    created = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    job = Job.from_mapping(
        {
            "name": "hourly",
            "schedule": "0 * * * *",
            "command": "true",
            "misfire": "run-once",
            "misfire_grace": "0s",
            "timezone": "UTC",
        }
    )
    store.put_job(job, created)
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 1.0))
    runs = store.list_runs(job="hourly")
    assert [r.trigger for r in runs] == [Trigger.CATCH_UP]
    latest_hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    assert runs[0].scheduled_at == latest_hour


def test_misfire_run_all_and_skip(tmp_path: Path) -> None:
    store = make_store(tmp_path / "db")
    created = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3, minutes=30)
    for name, policy in (("all", "run-all"), ("none", "skip")):
        store.put_job(
            Job.from_mapping(
                {
                    "name": name,
                    "schedule": "0 * * * *",
                    "command": "true",
                    "misfire": policy,
                    "misfire_grace": "0s",
                    "timezone": "UTC",
                }
            ),
            created,
        )
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 1.0))
    hours = {
        (created + dt.timedelta(hours=h)).replace(minute=0, second=0, microsecond=0)
        for h in range(1, 5)
    }
    missed = sorted(h for h in hours if created < h <= dt.datetime.now(dt.UTC))
    assert sorted(r.scheduled_at for r in store.list_runs(job="all")) == missed
    assert store.list_runs(job="none") == []
    # A restart does not run them again: the claims are in the store.
    asyncio.run(run_schedulers(tmp_path / "db", ["b"], 0.5))
    assert len(store.list_runs(job="all")) == len(missed)


def test_retries_are_linked_to_the_original(tmp_path: Path) -> None:
    store = make_store(tmp_path / "db")
    store.put_job(
        Job.from_mapping(
            {
                "name": "flaky",
                "schedule": "0 0 1 1 *",
                "command": "false",
                "retries": 2,
                "retry_backoff": 0.2,
            }
        ),
        dt.datetime.now(dt.UTC),
    )

    async def scenario() -> None:
        worker = StoreWorker(store)
        scheduler = Scheduler(store, worker, "a")
        await scheduler.load()
        await scheduler.trigger("flaky")
        await asyncio.sleep(1.5)
        await scheduler.launcher.wait_all(5)
        worker.close()

    asyncio.run(scenario())
    runs = sorted(store.list_runs(job="flaky"), key=lambda r: r.id)
    assert [(r.trigger, r.attempt, r.status) for r in runs] == [
        (Trigger.MANUAL, 1, RunStatus.FAILED),
        (Trigger.RETRY, 2, RunStatus.FAILED),
        (Trigger.RETRY, 3, RunStatus.FAILED),
    ]
    assert runs[1].retry_of == runs[0].id and runs[2].retry_of == runs[0].id


def test_reboot_runs_once_per_boot_id_even_when_the_clock_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel's files are the inputs here: a test cannot reboot the machine or step
    # its clock, so it points the scheduler at copies it can change.
    boot_id, proc_stat = tmp_path / "boot_id", tmp_path / "stat"
    monkeypatch.setattr(boot, "BOOT_ID_PATH", boot_id)
    monkeypatch.setattr(boot, "PROC_STAT_PATH", proc_stat)
    marks = tmp_path / "marks"
    store = make_store(tmp_path / "db")
    job = {"name": "at-boot", "schedule": "@reboot", "command": f"echo x >> {marks}"}
    store.put_job(Job.from_mapping(job), dt.datetime.now(dt.UTC))

    def restart(this_boot: str, btime: int) -> int:
        boot_id.write_text(f"{this_boot}\n")
        proc_stat.write_text(f"cpu  1 2 3\nbtime {btime}\nprocesses 9\n")
        asyncio.run(run_schedulers(tmp_path / "db", ["a"], 0.5))
        return len(marks.read_text().splitlines()) if marks.exists() else 0

    assert restart("boot-1", 1_700_000_000) == 1
    assert restart("boot-1", 1_700_000_000) == 1  # a restart
    assert restart("boot-1", 1_700_000_003) == 1  # the clock was stepped 3 s meanwhile
    assert restart("boot-2", 1_700_090_000) == 2  # a new boot
    runs = store.list_runs(job="at-boot")
    assert [r.scheduled_at.timestamp() for r in runs] == [1_700_090_000, 1_700_000_000]
