"""Small, exact readers of /proc for the process runner (Linux only)."""

from __future__ import annotations

import functools
import os
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
