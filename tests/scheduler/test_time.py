"""The scheduler against a hand-moved clock: stalls, misfire policies, wall-clock steps.

Time here is a `ManualClock`: nothing sleeps for real except while waiting for the
store's thread and the (real, tiny) commands to finish.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from evercron.model import Job, Run, RunStatus, Trigger
from evercron.scheduler import KillOutcome, ManualClock, Scheduler
from evercron.scheduler.observer import RunObserver
from evercron.store import Claim, RunQuery
from evercron.store.sqlite import SqliteStore
from tests.scheduler.harness import opened_store

NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def every(name: str, schedule: str, **settings: object) -> Job:
    return Job.from_mapping(
        {"name": name, "schedule": schedule, "command": "true", "timezone": "UTC", **settings}
    )


class World:
    """A scheduler on a real store with a manual clock."""

    def __init__(self, store: SqliteStore, clock: ManualClock, scheduler: Scheduler) -> None:
        self.store = store
        self.clock = clock
        self.scheduler = scheduler

    async def runs(self, job: str) -> list[Run]:
        """Runs of `job`, oldest first, once settled."""
        await self.settle()
        return sorted(await self.store.list_runs(RunQuery(job, limit=1000)), key=lambda r: r.id)

    async def settle(self) -> None:
        """Let the store's thread and the commands catch up (real time, bounded): until
        nothing is being claimed, waiting to be claimed now, or running here."""
        quiet = 0
        for _ in range(1000):
            await asyncio.sleep(0.005)
            busy = self.scheduler.working()
            quiet = 0 if busy else quiet + 1
            if quiet >= 3:
                return


@asynccontextmanager
async def world(
    tmp_path: Path, *jobs: Job, start: dt.datetime = NOON, observer: RunObserver | None = None
) -> AsyncIterator[World]:
    clock = ManualClock(start.timestamp())
    store = await opened_store(tmp_path / "db")
    for job in jobs:
        await store.put_job(job, start)
    scheduler = Scheduler(store, "owner", clock=clock, observer=observer)
    await scheduler.load()
    loop = asyncio.create_task(scheduler.run())
    try:
        yield World(store, clock, scheduler)
    finally:
        scheduler.stop()
        await clock.advance(2)  # firings claimed and held for an instant are released
        await loop
        await scheduler.launcher.wait_all(30)
        await scheduler.close()
        await store.close()


def fates(runs: list[Run]) -> Counter[tuple[Trigger, RunStatus]]:
    return Counter((run.trigger, run.status) for run in runs)


async def tick(w: World, seconds: int) -> None:
    """Let time pass second by second, giving each second's firings time to run."""
    for _ in range(seconds):
        await w.clock.advance(1)
        await w.settle()


class TestStalls:
    """The daemon stopped (SIGSTOP) or starved for a while: firings late but within
    grace run late; missed ones follow the misfire policy; each gets a row."""

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            (
                "run-all",
                {
                    (Trigger.SCHEDULE, RunStatus.SUCCEEDED): 3,
                    (Trigger.CATCH_UP, RunStatus.SUCCEEDED): 7,
                },
            ),
            (
                "skip",
                {
                    (Trigger.SCHEDULE, RunStatus.SUCCEEDED): 3,
                    (Trigger.SCHEDULE, RunStatus.SKIPPED): 7,
                },
            ),
            (
                "run-once",
                {
                    (Trigger.SCHEDULE, RunStatus.SUCCEEDED): 3,
                    (Trigger.SCHEDULE, RunStatus.SKIPPED): 7,
                },
            ),
        ],
    )
    def test_a_stall_follows_the_policy(
        self, tmp_path: Path, policy: str, expected: dict[tuple[Trigger, RunStatus], int]
    ) -> None:
        async def scenario() -> Counter[tuple[Trigger, RunStatus]]:
            job = every(
                "tick", "* * * * * * *", concurrency="allow", misfire=policy, misfire_grace="2.5s"
            )
            async with world(tmp_path, job) as w:
                await w.clock.jump(10.2)  # 12:00:01 .. 12:00:10 came due meanwhile
                await w.settle()
                runs = await w.runs("tick")
            return fates([r for r in runs if r.scheduled_at <= NOON + dt.timedelta(seconds=10)])

        assert asyncio.run(scenario()) == expected

    def test_run_once_runs_the_newest_missed_firing_when_none_is_late(self, tmp_path: Path) -> None:
        async def scenario() -> list[tuple[int, Trigger, RunStatus]]:
            job = every("minutely", "* * * * *", misfire="run-once", misfire_grace="10s")
            async with world(tmp_path, job) as w:
                await w.clock.jump(3 * 60 + 30)  # 12:01, 12:02, 12:03 missed
                await w.settle()
                runs = await w.runs("minutely")
            return [(r.scheduled_at.minute, r.trigger, r.status) for r in runs]

        assert sorted(asyncio.run(scenario())) == [
            (1, Trigger.SCHEDULE, RunStatus.SKIPPED),
            (2, Trigger.SCHEDULE, RunStatus.SKIPPED),
            (3, Trigger.CATCH_UP, RunStatus.SUCCEEDED),
        ]

    def test_forbid_holds_for_late_firings_and_runs_catch_ups_one_by_one(
        self, tmp_path: Path
    ) -> None:
        async def scenario() -> tuple[Counter[tuple[Trigger, RunStatus]], list[Run]]:
            job = every("single", "* * * * * * *", misfire="run-all", misfire_grace="1.5s")
            async with world(tmp_path, job) as w:
                await w.clock.jump(5.2)
                await w.settle()
                runs = await w.runs("single")
            return fates(runs), runs

        counted, runs = asyncio.run(scenario())
        assert counted[(Trigger.CATCH_UP, RunStatus.SUCCEEDED)] == 3  # each, in turn
        late = [r for r in runs if r.trigger is Trigger.SCHEDULE]
        assert [r.status for r in late].count(RunStatus.SUCCEEDED) <= 1
        for one, other in itertools.pairwise(runs):  # forbid: never overlapping
            if one.status is RunStatus.SUCCEEDED and other.status is RunStatus.SUCCEEDED:
                assert one.finished_at is not None and other.started_at is not None
                assert one.finished_at <= other.started_at

    def test_a_long_outage_writes_a_bounded_number_of_rows(self, tmp_path: Path) -> None:
        async def scenario() -> list[Run]:
            job = every(
                "tick", "* * * * * * *", concurrency="allow", misfire="skip", misfire_grace="0s"
            )
            async with world(tmp_path, job) as w:
                await w.clock.jump(86_400.5)  # a day of an every-second job
                await w.settle()
                runs = await w.runs("tick")
            return [r for r in runs if r.scheduled_at <= NOON + dt.timedelta(days=1)]

        runs = asyncio.run(scenario())
        assert len(runs) == 101
        summary = min(runs, key=lambda r: r.scheduled_at)
        assert "stands for 86300 firings" in (summary.error or "")
        assert all(r.status is RunStatus.SKIPPED for r in runs)


class TestClockSteps:
    """cronie's rules for a wall clock stepped while the daemon runs."""

    def test_forward_step_runs_skipped_fixed_times_once_and_records_the_rest(
        self, tmp_path: Path
    ) -> None:
        async def scenario() -> tuple[list[Run], list[Run]]:
            fixed = every("fixed", "15 12 * * *")
            wild = every("wild", "*/10 * * * *", concurrency="allow")
            async with world(tmp_path, fixed, wild) as w:
                await tick(w, 1)
                w.clock.step(3600)  # 12:00:01 -> 13:00:01
                await tick(w, 6)
                return await w.runs("fixed"), await w.runs("wild")

        fixed, wild = asyncio.run(scenario())
        assert [
            (r.scheduled_at.hour, r.scheduled_at.minute, r.trigger, r.status) for r in fixed
        ] == [(12, 15, Trigger.CATCH_UP, RunStatus.SUCCEEDED)]
        skipped = [r for r in wild if r.status is RunStatus.SKIPPED]
        assert [r.scheduled_at.minute for r in skipped] == [10, 20, 30, 40, 50]
        assert all("stepped forward" in (r.error or "") for r in skipped)
        assert [r.scheduled_at.hour for r in wild if r.status is RunStatus.SUCCEEDED] == [13]

    def test_a_big_forward_step_runs_nothing_it_skipped(self, tmp_path: Path) -> None:
        async def scenario() -> list[Run]:
            async with world(tmp_path, every("fixed", "15 12 * * *")) as w:
                await tick(w, 1)
                w.clock.step(4 * 3600)
                await tick(w, 6)
                return await w.runs("fixed")

        (run,) = asyncio.run(scenario())
        assert run.status is RunStatus.SKIPPED and "planned from the new time" in (run.error or "")

    def test_backward_step_runs_nothing_twice(self, tmp_path: Path) -> None:
        async def scenario() -> list[Run]:
            job = every("minutely", "* * * * *", concurrency="allow")
            async with world(tmp_path, job) as w:
                await tick(w, 125)  # 12:01 and 12:02 ran
                w.clock.step(-3600)
                for _ in range(62):  # an hour later by the new clock, then a bit
                    await w.clock.advance(60)
                    await w.settle()
                return await w.runs("minutely")

        runs = asyncio.run(scenario())
        times = [r.scheduled_at for r in runs]
        assert len(times) == len(set(times))  # not one time twice
        assert all(r.status is RunStatus.SUCCEEDED for r in runs)
        assert [t.strftime("%H:%M") for t in times[:3]] == ["12:01", "12:02", "12:03"]

    def test_a_big_backward_step_is_planned_from_the_new_time(self, tmp_path: Path) -> None:
        async def scenario() -> list[Run]:
            job = every("minutely", "* * * * *", concurrency="allow")
            async with world(tmp_path, job) as w:
                await tick(w, 65)
                w.clock.step(-5 * 3600)
                await tick(w, 70)
                return await w.runs("minutely")

        runs = asyncio.run(scenario())
        assert [r.scheduled_at.strftime("%H:%M") for r in runs] == ["12:01", "07:02"]


class TestRetries:
    def test_a_retry_of_a_job_paused_meanwhile_is_recorded_not_run(self, tmp_path: Path) -> None:
        async def scenario() -> list[Run]:
            job = every("flaky", "0 0 1 1 *", command="false", retries=1, retry_backoff="30s")
            async with world(tmp_path, job) as w:
                await w.scheduler.trigger("flaky")
                await w.settle()
                await w.store.set_paused("flaky", True)
                await w.scheduler.reload("flaky")
                await w.clock.advance(31)
                await w.settle()
                return await w.runs("flaky")

        first, retry = asyncio.run(scenario())
        assert (first.status, retry.trigger, retry.status) == (
            RunStatus.FAILED,
            Trigger.RETRY,
            RunStatus.SKIPPED,
        )
        assert retry.error == "the job was paused before this firing" and retry.retry_of == first.id

    def test_a_forbid_retry_does_not_overlap_a_newer_run(self, tmp_path: Path) -> None:
        async def scenario() -> list[Run]:
            job = every(
                "flaky",
                "0 0 1 1 *",
                command="exit $EVERCRON_ATTEMPT",
                retries=1,
                retry_backoff="5s",
            )
            async with world(tmp_path, job) as w:
                await w.scheduler.trigger("flaky")  # fails (exit 1): a retry in 5 s
                await w.settle()
                changed = every(
                    "flaky", "0 0 1 1 *", command="sleep 2", retries=1, retry_backoff="5s"
                )
                await w.store.put_job(changed, NOON)
                await w.scheduler.reload("flaky")
                await w.scheduler.trigger("flaky")  # runs for 2 real seconds
                await w.clock.advance(6)  # the retry comes due meanwhile
                await w.settle()
                return await w.runs("flaky")

        first, newer, retry = asyncio.run(scenario())
        assert (first.status, newer.status) == (RunStatus.FAILED, RunStatus.SUCCEEDED)
        assert retry.trigger is Trigger.RETRY and retry.status is RunStatus.SKIPPED
        assert f"run {newer.id} is still running" in (retry.error or "")


class TestEveryClaimedRunEnds:
    """A claimed run reaches a final status whatever fails where."""

    def test_a_start_that_fails_on_an_odd_directory_is_recorded_failed(
        self, tmp_path: Path
    ) -> None:
        async def scenario() -> Run:
            # (A name longer than a file name may be: only the start itself can tell.)
            job = every("odd", "0 0 1 1 *", cwd=f"/tmp/{'x' * 300}")
            async with world(tmp_path, job) as w:
                run_id = await w.scheduler.trigger("odd")
                await w.settle()
                run = await w.store.get_run(run_id)
            assert run is not None
            return run

        run = asyncio.run(scenario())
        assert run.status is RunStatus.FAILED and run.finished_at is not None
        assert f"chdir /tmp/{'x' * 300}" in (run.error or ""), run.error

    def test_killing_a_run_whose_process_is_gone_ends_it(self, tmp_path: Path) -> None:
        async def scenario() -> tuple[object, Run]:
            async with world(tmp_path, every("job", "0 0 1 1 *")) as w:
                (stuck,) = await w.store.claim([Claim("job", NOON, Trigger.SCHEDULE)], "owner")
                assert stuck.run_id is not None  # running, but no process of ours has it
                outcome = await w.scheduler.kill(stuck.run_id)
                run = await w.store.get_run(stuck.run_id)
            assert run is not None
            return outcome, run

        outcome, run = asyncio.run(scenario())
        assert outcome is KillOutcome.ENDED
        assert run.status is RunStatus.KILLED and "already gone" in (run.error or "")
