"""The scheduler with a real store and real processes (no daemon, no HTTP)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from evercron.model import Job, Run, RunStatus, Trigger
from evercron.process import descriptors
from evercron.process.cgroup import discover
from evercron.scheduler import Scheduler, boot, core
from evercron.store import Claim, Claimed, RunQuery
from evercron.store.sqlite import SqliteStore
from tests.scheduler.harness import opened_store


def put_job(path: Path, job: Job, created: dt.datetime | None = None) -> None:
    """Store `job` (created at `created`, default now)."""

    async def put() -> None:
        store = await opened_store(path)
        await store.put_job(job, created or dt.datetime.now(dt.UTC))
        await store.close()

    asyncio.run(put())


def runs_of(path: Path, job: str, status: RunStatus | None = None) -> list[Run]:
    """The runs of `job`, newest first."""

    async def read() -> list[Run]:
        store = await opened_store(path)
        runs = await store.list_runs(RunQuery(job, status, 1000))
        await store.close()
        return runs

    return asyncio.run(read())


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
    stores, schedulers, loops = [], [], []
    for owner in owners:
        store = await opened_store(store_path)
        scheduler = Scheduler(store, owner)
        await scheduler.load()
        stores.append(store)
        schedulers.append(scheduler)
        loops.append(asyncio.create_task(scheduler.run()))
    await asyncio.sleep(seconds)
    for scheduler in schedulers:
        scheduler.stop()
    await asyncio.gather(*loops)
    for scheduler in schedulers:
        await scheduler.launcher.wait_all(10)
        await scheduler.close()
    for store in stores:
        await store.close()


def test_every_second_fires_once_per_second(tmp_path: Path) -> None:
    log = tmp_path / "ticks"
    put_job(tmp_path / "db", every_second_job(log))
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
    runs = runs_of(tmp_path / "db", "tick")
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    assert sorted(str(r.id) for r in runs) == sorted(
        line.split()[1] for line in log.read_text().splitlines()
    )


def crowds_from(monkeypatch: pytest.MonkeyPatch, crowd_per_cpu: int) -> None:
    """Make `crowd_per_cpu` firings per CPU at one time a crowd (0: any)."""
    descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", True)
    monkeypatch.setattr(core, "CROWD_PER_CPU", crowd_per_cpu)


def started_in_crowd(log: Path, runs: list[Run], crowd_per_cpu: int) -> int:
    """Check the runs whose commands wrote their /proc/self/cgroup to `log`: each
    succeeded, each wrote once, and they ran in no run cgroup when every time was a
    crowd (`crowd_per_cpu` 0), in one each otherwise (where cgroups are used); how many."""
    unified = [line for line in log.read_text().splitlines() if line.startswith("0::")]
    assert len(unified) == len(runs)
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    in_run_groups = ["evercron-runs" in line for line in unified]
    if crowd_per_cpu == 0:
        assert not any(in_run_groups)
    elif discover() is not None:
        assert all(in_run_groups)
    return len(runs)


@pytest.mark.parametrize("crowd_per_cpu", [0, 100])
def test_a_crowded_instant_runs_its_firings_without_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crowd_per_cpu: int
) -> None:
    # Past `crowded_instant()` firings at one instant, a shell-free command runs at the
    # instant without /bin/sh (so outside any run cgroup); below, behind a waiting shell.
    crowds_from(monkeypatch, crowd_per_cpu)
    log = tmp_path / "ticks"
    job = {"command": f"cat /proc/self/cgroup >> {log}"}
    put_job(tmp_path / "db", every_second_job(log, **job))
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 2.6))
    runs = runs_of(tmp_path / "db", "tick")
    assert started_in_crowd(log, runs, crowd_per_cpu) >= 2


@pytest.mark.parametrize("crowd_per_cpu", [0, 100])
def test_a_crowd_of_late_firings_runs_without_a_shell_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crowd_per_cpu: int
) -> None:
    """Firings found late together in a crowd start as a crowded instant's do: a daemon
    that fell behind must not switch to the costlier start (a shell joining a cgroup),
    which kept three nodes at a thousand jobs a second from ever catching up."""
    crowds_from(monkeypatch, crowd_per_cpu)
    log = tmp_path / "groups"
    created = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    for n in range(3):
        job = {"name": f"yearly-{n}", "schedule": "0 0 1 1 *", "timezone": "UTC",
               "misfire": "run-once", "concurrency": "allow",
               "command": f"cat /proc/self/cgroup >> {log}"}  # fmt: skip
        put_job(tmp_path / "db", Job.from_mapping(job), created)
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 1.5))
    runs = [run for n in range(3) for run in runs_of(tmp_path / "db", f"yearly-{n}")]
    assert started_in_crowd(log, runs, crowd_per_cpu) == 3


def test_two_schedulers_share_the_work_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "ticks"
    put_job(tmp_path / "db", every_second_job(log))
    asyncio.run(run_schedulers(tmp_path / "db", ["a", "b", "c"], 3.6))
    counts = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(counts) >= 3 and set(counts.values()) == {1}
    owners = {r.owner for r in runs_of(tmp_path / "db", "tick")}
    assert owners <= {"a", "b", "c"}


def test_forbid_records_skipped_firings(tmp_path: Path) -> None:
    job = Job.from_mapping(
        {
            "name": "slow",
            "schedule": "* * * * * * *",
            "command": "sleep 1.7",
            "concurrency": "forbid",
        }
    )
    put_job(tmp_path / "db", job)
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 3.5))
    statuses = Counter(r.status for r in runs_of(tmp_path / "db", "slow"))
    assert statuses[RunStatus.SKIPPED] >= 1
    assert statuses[RunStatus.SUCCEEDED] >= 1
    skipped = runs_of(tmp_path / "db", "slow", RunStatus.SKIPPED)[0]
    assert "concurrency=forbid" in (skipped.error or "")


def test_misfire_run_once_after_downtime(tmp_path: Path) -> None:
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
    put_job(tmp_path / "db", job, created)
    asyncio.run(run_schedulers(tmp_path / "db", ["a"], 1.0))
    runs = runs_of(tmp_path / "db", "hourly")
    latest_hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    ran = [r for r in runs if r.status is not RunStatus.SKIPPED]
    assert [(r.trigger, r.scheduled_at) for r in ran] == [(Trigger.CATCH_UP, latest_hour)]
    skipped = [r for r in runs if r.status is RunStatus.SKIPPED]
    assert len(skipped) == 2 and all("misfire=run-once" in (r.error or "") for r in skipped)


def test_misfire_run_all_and_skip(tmp_path: Path) -> None:
    created = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3, minutes=30)
    for name, policy in (("all", "run-all"), ("none", "skip")):
        put_job(
            tmp_path / "db",
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
    ran = runs_of(tmp_path / "db", "all")
    assert sorted(r.scheduled_at for r in ran) == missed
    assert {(r.trigger, r.status) for r in ran} == {(Trigger.CATCH_UP, RunStatus.SUCCEEDED)}
    skipped = runs_of(tmp_path / "db", "none")
    assert sorted(r.scheduled_at for r in skipped) == missed  # a row each, none run
    assert all(r.status is RunStatus.SKIPPED and "misfire=skip" in (r.error or "") for r in skipped)
    # A restart does not run them again: the claims are in the store.
    asyncio.run(run_schedulers(tmp_path / "db", ["b"], 0.5))
    assert len(runs_of(tmp_path / "db", "all")) == len(missed)


class CountingStore(SqliteStore):
    """The real store, noting how many firings each claim call carried."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.claim_calls: list[int] = []

    async def claim(self, claims: Sequence[Claim], owner: str) -> list[Claimed]:
        self.claim_calls.append(len(claims))
        return await super().claim(claims, owner)


def test_jobs_found_late_together_are_claimed_in_one_store_call(tmp_path: Path) -> None:
    """A daemon that falls behind finds a thousand jobs late at once: one claim for all
    of them, not one each (which made it fall further behind)."""
    created = dt.datetime.now(dt.UTC) - dt.timedelta(days=800)
    for n in range(30):
        job = {"name": f"yearly-{n}", "schedule": "0 0 1 1 *", "command": "true",
               "misfire": "skip", "misfire_grace": "0s", "timezone": "UTC"}  # fmt: skip
        put_job(tmp_path / "db", Job.from_mapping(job), created)

    async def run() -> list[int]:
        store = CountingStore(tmp_path / "db")
        await store.migrate()
        scheduler = Scheduler(store, "a")
        await scheduler.load()
        loop = asyncio.create_task(scheduler.run())
        while len(await store.list_runs(RunQuery(None, RunStatus.SKIPPED, 1000))) < 60:
            await asyncio.sleep(0.02)
        scheduler.stop()
        await loop
        await scheduler.close()
        await store.close()
        return store.claim_calls

    calls = asyncio.run(run())
    assert calls == [sum(calls)] and sum(calls) >= 60  # two or three missed years each


def test_retries_are_linked_to_the_original(tmp_path: Path) -> None:
    put_job(
        tmp_path / "db",
        Job.from_mapping(
            {
                "name": "flaky",
                "schedule": "0 0 1 1 *",
                "command": "false",
                "retries": 2,
                "retry_backoff": 0.2,
            }
        ),
    )

    async def scenario() -> None:
        store = await opened_store(tmp_path / "db")
        scheduler = Scheduler(store, "a")
        await scheduler.load()
        await scheduler.trigger("flaky")
        await asyncio.sleep(1.5)
        await scheduler.launcher.wait_all(5)
        await store.close()

    asyncio.run(scenario())
    runs = sorted(runs_of(tmp_path / "db", "flaky"), key=lambda r: r.id)
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
    job = {"name": "at-boot", "schedule": "@reboot", "command": f"echo x >> {marks}"}
    put_job(tmp_path / "db", Job.from_mapping(job))

    def restart(this_boot: str, btime: int) -> int:
        boot_id.write_text(f"{this_boot}\n")
        proc_stat.write_text(f"cpu  1 2 3\nbtime {btime}\nprocesses 9\n")
        asyncio.run(run_schedulers(tmp_path / "db", ["a"], 0.5))
        return len(marks.read_text().splitlines()) if marks.exists() else 0

    assert restart("boot-1", 1_700_000_000) == 1
    assert restart("boot-1", 1_700_000_000) == 1  # a restart
    assert restart("boot-1", 1_700_000_003) == 1  # the clock was stepped 3 s meanwhile
    assert restart("boot-2", 1_700_090_000) == 2  # a new boot
    runs = runs_of(tmp_path / "db", "at-boot")
    assert [r.scheduled_at.timestamp() for r in runs] == [1_700_090_000, 1_700_000_000]
