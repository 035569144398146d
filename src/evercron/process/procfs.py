"""Small, exact readers of /proc for the process runner (Linux only)."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

_TASKS = "/proc/self/task"


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the runner needs."""

    state: str
    ppid: int
    pgrp: int
    session: int
    start_ticks: int


def own_children() -> set[int]:
    """Pids of this process's direct children (every thread's, reparented ones included)."""
    children: set[int] = set()
    for task in os.listdir(_TASKS):
        try:
            with open(f"{_TASKS}/{task}/children", "rb") as file:
                children.update(map(int, file.read().split()))
        except OSError:  # the thread ended while we listed them
            continue
    return children


def reparented_children() -> set[int]:
    """Pids among which every orphan reparented to this process is: the children of the
    main thread, which the kernel hands orphans to (the subreaper's first live thread).
    Children forked by other threads - the runner's own spawns - are not listed, so this
    stays cheap with a thousand commands running. Falls back to `own_children()`."""
    try:
        with open(f"{_TASKS}/{os.getpid()}/children", "rb") as file:
            return set(map(int, file.read().split()))
    except OSError:  # the main thread is gone: orphans went to another thread
        return own_children()


_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# A process is forked within microseconds of `boot_ticks()` before its start, unless the
# starting thread is preempted in between: a generous bound that a reused pid (pids
# wrap after seconds at the very least) cannot meet.
_START_SLACK_TICKS = _TICKS_PER_SECOND // 2


def boot_ticks() -> int:
    """Now, in clock ticks since boot - the unit of a process's start time in /proc.
    Read just before starting a process, it names that process with its pid: reading
    /proc/PID/stat instead waits for the new process's exec to finish."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND)


def started_at_ticks(stat: ProcStat, recorded: int) -> bool:
    """Whether the process of `stat` is the one started right after `boot_ticks()` gave
    `recorded` (or whose /proc start time was `recorded`)."""
    return 0 <= stat.start_ticks - recorded <= _START_SLACK_TICKS


def read_stat(pid: int) -> ProcStat | None:
    """The process's state and ids, or None when it no longer exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            raw = file.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return ProcStat(
        state=fields[0].decode(),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        start_ticks=int(fields[19]),
    )


def read_environ(pid: int) -> bytes:
    """The process's initial environment (NUL-separated), or b"" when unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return file.read()
    except OSError:
        return b""


def environ_has(pid: int, entry: bytes) -> bool | None:
    """Whether `KEY=value` (as bytes) is one of the process's environment entries; None
    when the environment cannot be read (or is empty, as in the middle of an exec)."""
    environ = read_environ(pid)
    if not environ:
        return None
    return entry in environ.split(b"\0")


@functools.cache
def is_linux() -> bool:
    """Whether this is Linux with /proc mounted (everything here needs both)."""
    return os.uname().sysname == "Linux" and os.path.exists("/proc/self/stat")
