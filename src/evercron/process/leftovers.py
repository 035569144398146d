"""Ending what is left of runs whose runner died (a daemon crash): by their cgroups, by
their process group, and by the marks in their environment.

A runner that dies cannot end its runs' trees; the next one finds them from what was
recorded: the run's cgroup directories (exact: setsid escapees included), the main
process's process group (only while its leader is still the recorded process), and
`EVERCRON_RUN_ID` with `EVERCRON_OWNER` in each process's environment - the run id alone
is not unique on a machine where several daemons with stores of their own run, the pair
is. Those marks are found by one scan of /proc for all the lost runs together, at
start-up only (a runner never scans /proc for its live runs).

Processes are signalled through pidfds opened before their marks are read, so a pid
reused meanwhile is never hit, and waited for the same way.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evercron.process.procfs import read_environ, read_stat, started_at_ticks

RUN_ID_VARIABLE = "EVERCRON_RUN_ID"
OWNER_VARIABLE = "EVERCRON_OWNER"
"""The environment variable naming the daemon process that started a run (its owner)."""

_WAIT = 2.0  # how long killed processes get to be gone before they count as survivors
_CGROUP_ROUNDS = 50  # kill rounds for a v1 group (no cgroup.kill) whose members fork


@dataclass(frozen=True)
class LostRun:
    """What is known of a lost run's processes."""

    run_id: str
    owner: str | None
    pid: int | None
    pid_start_ticks: int | None
    cgroups: Collection[str] = ()


@dataclass
class Ending:
    """What ending a lost run's leftovers did."""

    found: set[int] = field(default_factory=set)
    """The processes of the run that were running (and were sent SIGKILL)."""
    survivors: list[int] = field(default_factory=list)
    """Those still running afterwards."""

    def describe(self) -> str:
        """One clause for a log line: what was done."""
        count = len(self.found)
        if not count:
            return "nothing of it was left running"
        noun = "process" if count == 1 else "processes"
        if not self.survivors:
            return f"its {count} leftover {noun} were killed"
        pids = ", ".join(map(str, sorted(self.survivors)))
        return f"of its {count} leftover {noun}, {len(self.survivors)} survived SIGKILL: {pids}"


def end_lost_runs(runs: Iterable[LostRun]) -> dict[str, Ending]:
    """SIGKILL every process left by `runs` and check that none survives; by run id."""
    runs = list(runs)
    endings = {run.run_id: Ending() for run in runs}
    waiting: dict[int, int] = {}  # pid -> pidfd of everything signalled
    try:
        for run in runs:  # the groups first: one write ends each whole group
            for directory in run.cgroups:
                endings[run.run_id].found.update(kill_cgroup(directory))
        for run, pid, pidfd in _scan(runs):
            endings[run.run_id].found.add(pid)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            waiting[pid] = pidfd
        still = _wait_gone(waiting)
        for run in runs:
            ending = endings[run.run_id]
            ending.survivors = sorted(pid for pid in ending.found if pid in still)
            for directory in run.cgroups:
                if not _wait_empty(directory):
                    ending.survivors = sorted(set(ending.survivors) | set(_members(directory)))
            for directory in run.cgroups:
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
    finally:
        for pidfd in waiting.values():
            os.close(pidfd)
    return endings


def kill_cgroup(directory: str) -> set[int]:
    """SIGKILL every process in the cgroup `directory` (`cgroup.kill` where the kernel
    has it, else each listed process until none is left); the pids that were in it."""
    members = set(_members(directory))
    if not members:
        return members
    kill_file = f"{directory}/cgroup.kill"
    if os.path.exists(kill_file):
        with contextlib.suppress(OSError):
            with open(kill_file, "w") as file:
                file.write("1")
            return members
    for _ in range(_CGROUP_ROUNDS):  # members may fork between a listing and the kills
        for pid in _members(directory):
            members.add(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not _members(directory):
            break
        time.sleep(0.01)
    return members


def _members(directory: str) -> list[int]:
    try:
        with open(f"{directory}/cgroup.procs", "rb") as file:
            return [int(pid) for pid in file.read().split()]
    except OSError:
        return []


def _scan(runs: list[LostRun]) -> Iterable[tuple[LostRun, int, int]]:
    """Each living process of `runs` outside their groups, as (run, pid, pidfd): marked
    with the run's id and owner, or in the process group of a main process that is
    still the recorded one."""
    by_marks = {
        (f"{RUN_ID_VARIABLE}={run.run_id}".encode(), f"{OWNER_VARIABLE}={run.owner}".encode()): run
        for run in runs
        if run.owner is not None
    }
    by_group = {}
    for run in runs:
        if run.pid is not None and run.pid_start_ticks is not None:
            leader = read_stat(run.pid)
            if leader is not None and started_at_ticks(leader, run.pid_start_ticks):
                by_group[run.pid] = run
    if not by_marks and not by_group:
        return
    own = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == own:
            continue
        pid = int(name)
        try:
            pidfd = os.pidfd_open(pid)  # first: what is read below is of this process
        except OSError:
            continue
        owner = _belongs(pid, by_marks, by_group)
        if owner is None:
            os.close(pidfd)
        else:
            yield owner, pid, pidfd


def _belongs(
    pid: int,
    by_marks: dict[tuple[bytes, bytes], LostRun],
    by_group: dict[int, LostRun],
) -> LostRun | None:
    stat = read_stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return None
    if stat.pgrp in by_group:
        return by_group[stat.pgrp]
    if by_marks:
        entries = set(read_environ(pid).split(b"\0"))
        for (run_mark, owner_mark), run in by_marks.items():
            if run_mark in entries and owner_mark in entries:
                return run
    return None


def _wait_gone(pidfds: dict[int, int]) -> set[int]:
    """Wait up to `_WAIT` seconds for the processes to exit; the pids still running."""
    poller = select.poll()
    by_fd = {pidfd: pid for pid, pidfd in pidfds.items()}
    for pidfd in by_fd:
        poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + _WAIT
    while by_fd:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for pidfd, _ in poller.poll(remaining * 1000):
            poller.unregister(pidfd)
            by_fd.pop(pidfd, None)
    return {pid for pid in by_fd.values() if _running(pid)}


def _running(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def _wait_empty(directory: str) -> bool:
    """Wait up to `_WAIT` seconds for the cgroup to have no process left."""
    deadline = time.monotonic() + _WAIT
    while _members(directory):
        if time.monotonic() >= deadline or not Path(directory).is_dir():
            return not _members(directory)
        time.sleep(0.01)
    return True
