"""A daemon that died: its runs are marked lost, everything they left running is ended -
setsid escapees included - and nothing of another daemon's is touched."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evercron.process.cgroup import discover
from tests.daemon.conftest import DaemonProcess
from tests.markers import Marker


@pytest.fixture(params=["cgroups", "no-cgroups"])
def daemon_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Daemons with a cgroup per run (where the machine allows) and without any."""
    if request.param == "cgroups" and discover() is None:
        pytest.skip("no writable cgroup v2 here: runs have no cgroups anyway")
    return {"EVERCRON_CGROUPS": "off"} if request.param == "no-cgroups" else {}


@pytest.fixture
def markers() -> Iterator[Callable[[], Marker]]:
    """Make markers; the test fails if a process marked with one outlives it."""
    made: list[Marker] = []

    def make() -> Marker:
        made.append(Marker())
        return made[-1]

    yield make
    left = [pid for marker in made for pid in marker.alive()]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left behind: {left}"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Wait until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout}s")
        time.sleep(0.02)


def _start_escaping_run(daemon: DaemonProcess, escapee: Marker, main: Marker) -> int:
    """A run whose command leaves a setsid escapee beside its own sleep; its id once
    both run."""
    daemon.add_job(
        name="victim", schedule="0 0 1 1 *", command=f"setsid {escapee.sleep()} & {main.sleep()}"
    )
    run: dict[str, Any] = daemon.api("POST", "/api/v1/jobs/victim/trigger", 202)
    wait_for(lambda: len(escapee.alive()) == 1 and len(main.alive()) == 1, "running")
    return int(run["id"])


def _groups_of(pid: int) -> list[Path]:
    """Run cgroups (v2 and v1) that the daemon process `pid` made (a daemon started by
    this process has the same cgroups, so the same roots)."""
    root = discover()
    if root is None:
        return []
    roots = [root.path, *root.support.sweepable_roots()]
    return [group for r in roots if r.is_dir() for group in r.glob(f"{pid}-*")]


def test_a_crashed_daemons_escapees_are_ended_and_the_log_says_so(
    start_daemon: Any, markers: Callable[[], Marker], daemon_env: dict[str, str]
) -> None:
    escapee, main = markers(), markers()
    daemon: DaemonProcess = start_daemon(env=daemon_env)
    run_id = _start_escaping_run(daemon, escapee, main)
    dead_pid = daemon.process.pid
    daemon.stop(signal.SIGKILL)
    # The run's processes outlive the daemon: the escapee outside its process group ...
    assert len(escapee.alive()) == 1 and len(main.alive()) == 1
    again: DaemonProcess = start_daemon(env=daemon_env)
    # ... until the next daemon marks the run lost and ends them all (before it serves).
    assert escapee.alive() == [] and main.alive() == []
    lost = again.api("GET", f"/api/v1/runs/{run_id}")
    assert lost["status"] == "lost"
    said = re.fullmatch(
        rf"the daemon process that ran it \({dead_pid}-\d+\) died; "
        r"its (\d+) leftover processes were killed",
        lost["error"],
    )
    assert said is not None, lost["error"]
    assert int(said.group(1)) >= 2  # the escapee and the main sleep (and its shell)
    assert f"run {run_id} of victim marked lost; its {said.group(1)} leftover" in again.log()
    assert _groups_of(dead_pid) == []  # its groups are removed (the lost run's and pooled)


def test_recovery_never_touches_another_daemons_run_of_the_same_id(
    start_daemon: Any, tmp_path: Path, markers: Callable[[], Marker], daemon_env: dict[str, str]
) -> None:
    ours, ours_main, theirs, theirs_main = markers(), markers(), markers(), markers()
    crashing: DaemonProcess = start_daemon(state_dir=tmp_path / "a", env=daemon_env)
    other: DaemonProcess = start_daemon(state_dir=tmp_path / "b", env=daemon_env)
    run_id = _start_escaping_run(crashing, ours, ours_main)
    assert _start_escaping_run(other, theirs, theirs_main) == run_id  # stores of their own
    crashing.stop(signal.SIGKILL)
    again: DaemonProcess = start_daemon(state_dir=tmp_path / "a", env=daemon_env)
    assert again.api("GET", f"/api/v1/runs/{run_id}")["status"] == "lost"
    assert ours.alive() == [] and ours_main.alive() == []
    assert len(theirs.alive()) == 1 and len(theirs_main.alive()) == 1
    assert other.api("GET", f"/api/v1/runs/{run_id}")["status"] == "running"
    other.api("POST", f"/api/v1/runs/{run_id}/kill", 202)
    assert other.wait_for_run(run_id)["status"] == "killed"
    assert theirs.alive() == [] and theirs_main.alive() == []


def test_a_lost_run_with_nothing_left_says_so(
    start_daemon: Any, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    # A run whose whole tree ended while no daemon watched it: the daemon was frozen
    # when it ended, and then killed.
    started, done = tmp_path / "started", tmp_path / "done"
    daemon: DaemonProcess = start_daemon(env=daemon_env)
    command = f"touch {started}; sleep 0.3; touch {done}"
    daemon.add_job(name="quick", schedule="0 0 1 1 *", command=command)
    run_id = daemon.api("POST", "/api/v1/jobs/quick/trigger", 202)["id"]
    wait_for(started.exists, "started")
    daemon.process.send_signal(signal.SIGSTOP)
    wait_for(done.exists, "done")
    daemon.stop(signal.SIGKILL)
    again: DaemonProcess = start_daemon(env=daemon_env)
    lost = again.api("GET", f"/api/v1/runs/{run_id}")
    assert lost["status"] == "lost"
    assert lost["error"].endswith("died; nothing of it was left running"), lost["error"]
