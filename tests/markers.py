"""Markers for spawned processes: find and count what a test left running."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from evercron.process.procfs import own_children, read_stat

_counter = itertools.count(1)


def zombie_children() -> list[int]:
    """This process's children (any thread's) that exited and were not reaped."""
    return [pid for pid in own_children() if (s := read_stat(pid)) and s.state == "Z"]


def processes_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) `sleep` processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            name = (entry / "comm").read_bytes().strip()
        except OSError:
            continue
        if name == b"sleep" and marker.encode() in cmdline and state != b"Z":
            found.append(int(entry.name))
    return found


class Marker:
    """A unique `sleep` duration: `sleep <marker>` processes can be found and counted."""

    def __init__(self) -> None:
        self.value = f"{300 + next(_counter)}.{os.getpid() % 100000:05d}"

    def sleep(self) -> str:
        """A shell word that sleeps long and is unique to this test."""
        return f"sleep {self.value}"

    def alive(self) -> list[int]:
        """The marked processes still running."""
        return processes_with(f"sleep {self.value}")
