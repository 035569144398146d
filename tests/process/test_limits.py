"""`max_processes` and `max_memory` with real processes: fork bombs, memory hogs, and the
cgroups that hold the limits (made, pooled, re-limited, removed)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evercron.process import Command, Result, Status, descriptors, run, runner, start
from evercron.process.cgroup import CgroupRoot, discover, limit_support
from evercron.process.controllers import (
    MAX_MEMORY,
    MAX_PROCESSES,
    Controller,
    LimitSupport,
    find_controllers,
)
from tests.markers import Marker

MiB = 1024 * 1024


@pytest.fixture(autouse=True, params=["popen", "posix_spawn"])
def start_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a command is started (see test_runner.py)."""
    if request.param == "posix_spawn":
        descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", request.param == "posix_spawn")
    return str(request.param)


def _root(*settings: str) -> CgroupRoot:
    """This process's run cgroups, skipping the test where `settings` are not enforced."""
    root = discover()
    missing = limit_support().unenforced(dict.fromkeys(settings, 1))
    if root is None or missing:
        pytest.skip(f"limits not enforced here: {missing or 'no cgroups'}")
    return root


def _group_of(controller: str, cgroup_file: str) -> str:
    """The group named for `controller` ("pids", "memory"; "" for v2) in a
    /proc/PID/cgroup text."""
    for line in cgroup_file.splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (not controller and not names):
            return path
    raise AssertionError(f"no {controller or 'v2'} line in {cgroup_file}")


def _limit_seen(root: CgroupRoot, controller: Controller, cgroup_file: str, file: str) -> str:
    """The content of limit file `file` of the group that the process whose
    /proc/PID/cgroup is `cgroup_file` was in for `controller`."""
    name = Path(_group_of(controller.name if controller.v1_root else "", cgroup_file)).name
    return (controller.directory(root.path / name) / file).read_text().strip()


def _own() -> str:
    return Path("/proc/self/cgroup").read_text()


class _Sampler:
    """Counts, every few milliseconds while running, the processes of the host and of
    one cgroup; keeps the peaks."""

    def __init__(self, procs_file: Callable[[], str | None]) -> None:
        self._procs_file = procs_file
        self.host_peak = self.group_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.host_peak = max(self.host_peak, _host_processes())
            path = self._procs_file()
            if path is not None:
                try:
                    members = len(Path(path).read_text().split())
                except OSError:
                    continue
                self.group_peak = max(self.group_peak, members)


def _host_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


class TestMaxProcesses:
    def test_a_fork_bomb_is_capped_and_ends_on_time(self, marker: Marker) -> None:
        # Every bomb process ignores SIGTERM (so the end needs SIGKILL after kill_grace)
        # and leaves a marked sleep; dash ignores `ulimit -u` and root RLIMIT_NPROC, so
        # only the pids controller holds it.
        _root(MAX_PROCESSES)
        bomb = f"trap '' TERM; bomb() {{ {marker.sleep()} & bomb | bomb & }}; bomb; wait"
        own_group: list[str] = []

        async def scenario() -> Result:
            process = await start(Command(bomb, max_processes=50, timeout=2, kill_grace=1))
            own_group.append(process.cgroup_directories[0])  # v2 group: counts, no cap
            return await process.wait()

        baseline = _host_processes()
        began = time.monotonic()
        with _Sampler(lambda: f"{own_group[0]}/cgroup.procs" if own_group else None) as seen:
            result = asyncio.run(scenario())
        took = time.monotonic() - began
        assert result.status is Status.TIMED_OUT and result.kill_signal == "SIGKILL"
        assert took < 2 + 1 + 3, f"the run took {took:.1f}s"
        assert 0 < seen.group_peak <= 50
        assert seen.host_peak < baseline + 50 + 200  # (other work on the machine varies)
        assert result.error is not None and "max_processes (50) reached" in result.error
        assert marker.alive() == []

    def test_forks_within_the_cap_are_not_reported(self) -> None:
        _root(MAX_PROCESSES)
        result = asyncio.run(run(Command("(true); (true); echo ok", max_processes=50)))
        assert (result.status, result.error, result.output.text()) == (
            Status.SUCCEEDED,
            None,
            "ok\n",
        )


class TestMaxMemory:
    HOG = "import sys; data = b'x' * (200 << 20); print('survived')"

    def test_a_hog_is_killed_and_the_reason_recorded(self) -> None:
        _root(MAX_MEMORY)
        result = asyncio.run(run(Command([sys.executable, "-c", self.HOG], max_memory=64 * MiB)))
        assert (result.status, result.exit_code, result.signal) == (Status.FAILED, None, "SIGKILL")
        assert result.kill_signal is None  # the kernel's SIGKILL, not evercron's
        assert result.error == "1 process killed by the kernel for exceeding max_memory (64MiB)"
        assert "survived" not in result.output.text()

    def test_a_child_killed_for_memory_is_told_with_the_exit(self) -> None:
        _root(MAX_MEMORY)
        script = f'{sys.executable} -c "{self.HOG}"; echo "hog: $?"; exit 3'
        result = asyncio.run(run(Command(script, max_memory=64 * MiB)))
        assert (result.status, result.exit_code) == (Status.FAILED, 3)
        assert result.output.data("stdout") == b"hog: 137\n"
        assert result.error == "1 process killed by the kernel for exceeding max_memory (64MiB)"

    def test_within_the_limit_nothing_is_said(self) -> None:
        _root(MAX_MEMORY)
        small = "data = b'x' * (8 << 20); print('fine')"
        result = asyncio.run(run(Command([sys.executable, "-c", small], max_memory=64 * MiB)))
        assert (result.status, result.error, result.output.text()) == (
            Status.SUCCEEDED,
            None,
            "fine\n",
        )


class TestLimitGroups:
    @pytest.mark.parametrize("shape", ["line", "argv", "held", "bulk"])
    def test_the_command_runs_under_its_limits(self, shape: str) -> None:
        # Every way a command starts: a /bin/sh line, an argv command (never forked
        # inside a limited group: it joins through the shell), held, in bulk.
        root = _root(MAX_PROCESSES, MAX_MEMORY)
        pids, memory = (root.support.controllers[s] for s in (MAX_PROCESSES, MAX_MEMORY))
        args: str | list[str] = (
            ["cat", "/proc/self/cgroup"] if shape == "argv" else "cat /proc/self/cgroup"
        )
        command = Command(args, max_processes=7, max_memory=96 * MiB)

        async def scenario() -> Result:
            process = await start(command, held=shape == "held", in_bulk=shape == "bulk")
            process.release()
            return await process.wait()

        own = Path("/proc/self/cgroup").read_text()
        seen = asyncio.run(scenario()).output.text()
        assert _limit_seen(root, pids, seen, "pids.max") == "7"
        memory_file = "memory.limit_in_bytes" if memory.version == 1 else "memory.max"
        assert _limit_seen(root, memory, seen, memory_file) == str(96 * MiB)
        assert Path("/proc/self/cgroup").read_text() == own, "this process is back home"

    def test_a_pooled_group_takes_the_limits_of_each_run(self) -> None:
        root = _root(MAX_PROCESSES)
        pids = root.support.controllers[MAX_PROCESSES]
        seen = []  # (a group's limit, read before the next run takes the group)
        for cap in (5, 50, None, 5):
            text = asyncio.run(run(Command("cat /proc/self/cgroup", max_processes=cap)))
            if cap is None and pids.v1_root is not None:  # then in no v1 pids group
                seen.append(_group_of("pids", text.output.text()) == _group_of("pids", _own()))
            else:
                seen.append(_limit_seen(root, pids, text.output.text(), "pids.max"))
        assert seen == ["5", "50", True if pids.v1_root else "max", "5"]

    def test_a_v1_group_removed_behind_our_back_is_made_again(self) -> None:
        root = _root(MAX_PROCESSES)
        pids = root.support.controllers[MAX_PROCESSES]
        if pids.v1_root is None:
            pytest.skip("limits are in the cgroup v2 groups themselves here")
        group = root.acquire(max_processes=7)
        assert group is not None
        root.release(group, empty=True)  # pooled with its limit: the next run gets it
        pids.directory(group.path).rmdir()
        result = asyncio.run(run(Command("cat /proc/self/cgroup", max_processes=7)))
        assert result.status is Status.SUCCEEDED, result.output.text()
        assert _limit_seen(root, pids, result.output.text(), "pids.max") == "7"

    def test_a_limit_that_cannot_be_set_fails_the_start(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: Marker
    ) -> None:
        # A v1 hierarchy that is not one (no limit file can be written there): the run
        # must not go without its limit.
        real = discover()
        if real is None:
            pytest.skip("no writable cgroup v2 here")
        broken = Controller(MAX_PROCESSES, "pids", 1, tmp_path / "evercron-runs")
        root = CgroupRoot(real.path, LimitSupport({MAX_PROCESSES: broken}, {}))
        root._numbers = itertools.count(1_000_000)  # (names apart from the real root's)
        monkeypatch.setattr(runner, "discover", lambda: root)
        result = asyncio.run(run(Command(marker.sleep(), max_processes=7)))
        assert (result.status, result.pid, result.exit_code) == (Status.FAILED, None, None)
        assert result.error is not None
        assert result.error.startswith("cannot set max_processes = 7 with cgroup v1 pids in ")
        assert not (real.path / f"{root._prefix}-1000000").exists()  # removed again
        root.close()

    def test_v1_groups_are_removed_with_the_pool_and_swept_after_their_owner(self) -> None:
        root = _root(MAX_PROCESSES)
        v1_roots = root.support.sweepable_roots()
        if not v1_roots:
            pytest.skip("limits are in the cgroup v2 groups themselves here")
        # A child process makes limited groups, leaves its pool, exits: nothing stays.
        code = (
            "import asyncio; from evercron.process import Command, run; "
            "asyncio.run(run(Command('true', max_processes=9, max_memory=64 << 20)))"
        )
        child = subprocess.Popen([sys.executable, "-c", code])
        assert child.wait(timeout=60) == 0
        # A group left by a process that is gone (as after a crash) is swept.
        dead = v1_roots[0] / "999999999-1-1"
        dead.mkdir()
        assert root.sweep() >= 1
        assert not dead.exists()
        left = [
            entry.name for r in v1_roots if r.exists() for entry in r.iterdir() if entry.is_dir()
        ]
        # (Other processes on this machine may have groups of their own there.)
        assert [name for name in left if name.startswith(f"{child.pid}-")] == []


class TestWithoutControllers:
    def test_status_says_why_when_cgroups_are_off(self) -> None:
        code = (
            "from evercron.process.cgroup import limit_support; print(limit_support().describe())"
        )
        env = {**os.environ, "EVERCRON_CGROUPS": "off"}
        child = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
        reason = "unavailable: cgroups turned off (EVERCRON_CGROUPS=off)"
        assert child.stdout.strip() == str({MAX_PROCESSES: reason, MAX_MEMORY: reason})

    def test_limits_need_a_cgroup(self) -> None:
        with pytest.raises(ValueError, match="need tracking"):
            Command("true", tracking="session", max_processes=5)
        with pytest.raises(ValueError, match="max_processes must be"):
            Command("true", max_processes=0)
        with pytest.raises(ValueError, match="max_memory must be"):
            Command("true", max_memory=-1)
        with pytest.raises(ValueError, match="max_memory must be"):
            Command("true", max_memory=2**63)


class TestCgroupV2Controllers:
    """Machines whose v2 tree has the controllers (not this one, maybe): the decisions
    and files, on a directory laid out as the kernel lays one out."""

    @pytest.fixture
    def tree(self, tmp_path: Path) -> Iterator[Path]:
        runs = tmp_path / "service" / "evercron-runs"
        runs.mkdir(parents=True)
        (tmp_path / "service" / "cgroup.controllers").write_text("cpu memory pids\n")
        (tmp_path / "service" / "cgroup.subtree_control").write_text("memory pids\n")
        (runs / "cgroup.controllers").write_text("memory pids\n")
        (runs / "cgroup.subtree_control").write_text("")
        yield runs

    def test_controllers_enabled_for_the_run_groups_are_used(self, tree: Path) -> None:
        support = find_controllers(tree)
        assert support.describe() == {
            MAX_PROCESSES: "cgroup v2 pids",
            MAX_MEMORY: "cgroup v2 memory",
        }
        group = tree / "1-2-3"
        group.mkdir()
        for name in ("pids.max", "memory.max", "memory.swap.max"):
            (group / name).touch()  # (kernel files take each write whole)
        support.controllers[MAX_PROCESSES].write_limit(group, 50)
        support.controllers[MAX_MEMORY].write_limit(group, 64 * MiB)
        assert (group / "pids.max").read_text() == "50"
        assert (group / "memory.max").read_text() == str(64 * MiB)
        assert (group / "memory.swap.max").read_text() == "0"  # no swap on top of it
