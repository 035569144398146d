"""The launcher under overload: a bound on live processes, and firings that could only
start later than misfire_grace recorded as missed instead of run late."""

from __future__ import annotations

import asyncio
import datetime as dt
import resource
import time
from pathlib import Path

import pytest

from evercron.model import Job, RunStatus
from evercron.process import descriptors
from evercron.process.cgroup import discover
from evercron.scheduler.slots import Slots, live_process_limit
from tests.markers import Marker
from tests.scheduler.harness import claim, launch_of, launcher_for, opened_store
from tests.scheduler.test_observer import Recorder


def test_slots_bound_hand_over_in_order_and_refuse_once_closed() -> None:
    async def scenario() -> list[object]:
        slots = Slots(1)
        order: list[object] = []
        assert await slots.acquire()

        async def wait(name: str) -> None:
            order.append((name, await slots.acquire()))

        first = asyncio.create_task(wait("first"))
        second = asyncio.create_task(wait("second"))
        await asyncio.sleep(0.01)
        assert order == []  # both wait for the one slot
        slots.release()
        await asyncio.sleep(0.01)
        assert order == [("first", True)]
        slots.close()
        await asyncio.gather(first, second)
        order.append(await slots.acquire())
        return order

    assert asyncio.run(scenario()) == [("first", True), ("second", False), False]


def test_live_process_limit_stays_inside_the_descriptor_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = live_process_limit()
    assert 64 <= limit <= 16384
    if soft != resource.RLIM_INFINITY and soft > 1024:
        assert limit * 8 < soft


def test_a_firing_that_waits_past_misfire_grace_is_recorded_missed(tmp_path: Path) -> None:
    job = Job.from_mapping(
        {"name": "j", "schedule": "@yearly", "command": "sleep 1", "misfire_grace": "0.3s"}
    )

    recorder = Recorder()

    async def scenario() -> tuple[RunStatus, RunStatus, str]:
        store = await opened_store(tmp_path / "db")
        launcher = launcher_for(store)
        launcher.observer = recorder
        launcher._slots = Slots(1)  # one process at a time: the second firing waits
        now = dt.datetime.now(dt.UTC)
        first = await claim(store, "j", now)
        second = await claim(store, "j", now + dt.timedelta(microseconds=1))
        launcher.launch(launch_of(first, job, now))
        launcher.launch(launch_of(second, job, now))
        assert await launcher.wait_all(30)
        one, two = await store.get_run(first), await store.get_run(second)
        await store.close()
        assert one is not None and two is not None
        return one.status, two.status, two.error or ""

    status_one, status_two, error = asyncio.run(scenario())
    assert status_one is RunStatus.SUCCEEDED
    assert status_two is RunStatus.SKIPPED
    assert error.startswith("missed: it could start only") and "overloaded" in error
    assert recorder.missed == {"j": 1}  # told to observers (metrics) as it happened
    (started,) = recorder.started  # the first, on time: a real delay (its release)
    assert started.delay is not None and 0 <= started.delay < 5
    ended = {e.status: e.duration for e in recorder.ended}
    assert ended[RunStatus.SKIPPED] is None
    assert 1 <= (ended[RunStatus.SUCCEEDED] or 0) < 10  # "sleep 1"


def test_a_firing_waits_for_its_spawn_turn_and_is_missed_if_that_comes_too_late(
    tmp_path: Path,
) -> None:
    def job(name: str, grace: str) -> Job:
        return Job.from_mapping(
            {"name": name, "schedule": "@yearly", "command": "true", "misfire_grace": grace}
        )

    async def scenario() -> dict[str, tuple[RunStatus, str]]:
        store = await opened_store(tmp_path / "db")
        launcher = launcher_for(store)
        launcher._spawning = asyncio.Semaphore(1)
        await launcher._spawning.acquire()  # every spawn turn taken: both firings wait
        now = dt.datetime.now(dt.UTC)
        ids = {}
        for name, grace in (("short", "0.3s"), ("long", "30s")):
            run_id = await claim(store, name, now)
            ids[name] = run_id
            launcher.launch(launch_of(run_id, job(name, grace), now))
        await asyncio.sleep(0.6)
        waiting = [await store.get_run(run_id) for run_id in ids.values()]
        assert all(run is not None and run.pid is None for run in waiting)  # none spawned
        launcher._spawning.release()
        assert await launcher.wait_all(30)
        runs = {name: await store.get_run(run_id) for name, run_id in ids.items()}
        await store.close()
        return {n: (r.status, r.error or "") for n, r in runs.items() if r is not None}

    outcome = asyncio.run(scenario())
    assert outcome["long"] == (RunStatus.SUCCEEDED, "")
    status, error = outcome["short"]
    assert status is RunStatus.SKIPPED and error.startswith("missed: it could start only")


@pytest.mark.parametrize("crowded", [False, True])
def test_a_crowded_instant_starts_shell_free_commands_at_it_without_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crowded: bool
) -> None:
    # The daemon's descriptors are sealed, so its commands start through posix_spawn.
    descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", True)
    out = tmp_path / "stat"
    job = Job.from_mapping(
        {
            "name": "j",
            "schedule": "* * * * * * *",
            "concurrency": "allow",
            "command": f"cat /proc/self/stat /proc/self/cgroup >> {out}",
        }
    )

    async def scenario() -> tuple[float, list[str], int | None]:
        store = await opened_store(tmp_path / "db")
        launcher = launcher_for(store)
        fire_at = dt.datetime.fromtimestamp(time.time() + 0.5, dt.UTC)
        run_id = await claim(store, "j", fire_at)
        launcher.launch(launch_of(run_id, job, fire_at, fire_at.timestamp(), crowded))
        assert await launcher.wait_all(30)
        run = await store.get_run(run_id)
        await store.close()
        assert run is not None and run.status is RunStatus.SUCCEEDED
        assert run.started_at is not None and run.started_at >= fire_at  # never early
        return fire_at.timestamp(), out.read_text().split("\n"), run.pid

    _, lines, pid = asyncio.run(scenario())
    stat = lines[0].split()
    own = Path("/proc/self/cgroup").read_text().splitlines()
    unified = next(line for line in own if line.startswith("0::"))
    cgroup = next(line for line in lines if line.startswith("0::"))
    if crowded:  # `cat` itself, tracked by its session: no shell, no cgroup to join
        assert int(stat[0]) == pid and int(stat[5]) == pid
        assert cgroup == unified
    else:  # behind a waiting /bin/sh that joined the run's cgroup (where there is one)
        assert int(stat[5]) == pid
        if discover() is not None:
            assert cgroup != unified and "evercron-runs" in cgroup


def test_direct_started_waits_for_the_crowded_starts_or_until_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scheduler claims a crowded instant only once the previous one's processes are
    # started (they take every CPU), or at its latest moment.
    descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", True)
    job = Job.from_mapping(
        {"name": "j", "schedule": "* * * * * * *", "concurrency": "allow", "command": "/bin/true"}
    )  # (a program, not the builtin: it starts at its instant, not ahead behind a shell)

    async def scenario() -> tuple[float, float, float]:
        store = await opened_store(tmp_path / "db")
        launcher = launcher_for(store)
        began = time.time()
        await launcher.direct_started(began + 5)  # nothing crowded: at once
        at_once = time.time() - began
        fire_at = dt.datetime.fromtimestamp(time.time() + 0.6, dt.UTC)
        run_id = await claim(store, "j", fire_at)
        launcher.launch(launch_of(run_id, job, fire_at, fire_at.timestamp(), crowded=True))
        began = time.time()
        await launcher.direct_started(began + 0.2)  # its start is 0.6 s away: the limit
        limited = time.time() - began
        await launcher.direct_started(began + 5)
        started = time.time() - fire_at.timestamp()
        assert await launcher.wait_all(30)
        await store.close()
        return at_once, limited, started

    at_once, limited, started = asyncio.run(scenario())
    assert at_once < 0.1
    assert 0.15 < limited < 0.5
    assert 0 <= started < 2  # returned once the crowded firing was started, not before


def test_a_crowded_shell_free_run_still_times_out_and_is_killed_as_a_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tracked by its session instead of a cgroup: the deadline and a kill still end it
    # with everything it started (here a `setsid -f` escapee, recognised by its run id).
    descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", True)
    marker = Marker()
    script = tmp_path / "escape.sh"  # a program (run without a shell) that leaves one
    script.write_text(f"#!/bin/sh\nsetsid -f {marker.sleep()}\nsleep 60\n")
    script.chmod(0o755)

    def job(name: str, timeout: str | None) -> Job:
        settings = {"name": name, "schedule": "* * * * * * *", "concurrency": "allow"}
        settings["command"] = str(script)
        if timeout is not None:
            settings["timeout"] = timeout
        return Job.from_mapping({**settings, "kill_grace": "2s"})

    async def scenario() -> tuple[RunStatus, RunStatus, float]:
        store = await opened_store(tmp_path / "db")
        launcher = launcher_for(store)
        fire_at = dt.datetime.fromtimestamp(time.time() + 0.3, dt.UTC)
        timed = await claim(store, "timed", fire_at)
        killed = await claim(store, "killed", fire_at)
        for run_id, name, timeout in ((timed, "timed", "1s"), (killed, "killed", None)):
            launch = launch_of(run_id, job(name, timeout), fire_at, fire_at.timestamp(), True)
            launcher.launch(launch)
        await asyncio.sleep(1.5)
        assert launcher.kill(killed)
        assert await launcher.wait_all(30)
        ended = time.time() - fire_at.timestamp()
        first, second = await store.get_run(timed), await store.get_run(killed)
        await store.close()
        assert first is not None and second is not None
        return first.status, second.status, ended

    timed_status, killed_status, ended = asyncio.run(scenario())
    assert timed_status is RunStatus.TIMED_OUT
    assert killed_status is RunStatus.KILLED
    assert ended < 20
    assert not marker.alive()
