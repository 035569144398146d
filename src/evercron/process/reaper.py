"""One reaper owns every wait() of this process.

Our own commands are watched through pidfds (no signal handler needed, any thread's event
loop works) and reaped with `wait4` for their resource usage. Other children that die
here - descendants of our commands reparented to us because we are a child subreaper - are
reaped only after looking at them without reaping (their /proc entry): a zombie in our own
session is some other code's child (`subprocess.run` elsewhere in this program) and is left
for its owner, unless we are PID 1, where every orphan must be reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from evercron.process.procfs import read_stat, reparented_children
from evercron.process.read_watch import ReadWatch, read_watch

_PR_SET_CHILD_SUBREAPER = 36
_SCAN_INTERVAL = 0.02  # seconds between shared stray scans while commands run


class _HasPid(Protocol):
    pid: int


P = TypeVar("P", bound=_HasPid)


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How one process ended: its raw wait status and its resource usage."""

    pid: int
    status: int
    rusage: resource.struct_rusage | None
    number: int = 0
    """For our own commands: how many of their exits had been collected with this one."""


Accountant = Callable[[ExitInfo], None]


@dataclass
class _Watch:
    watch: ReadWatch
    future: asyncio.Future[ExitInfo]
    pidfd: int


class Reaper:
    """Collects exit statuses for the whole process; use the module's `reaper()` instance."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._watches: dict[int, _Watch] = {}
        self._reserved: set[int] = set()
        self._in_flight = 0  # spawns whose pid is not reserved yet: no stray scan meanwhile
        self._by_session: dict[int, Accountant] = {}
        self._by_pid: dict[int, Accountant] = {}
        self._own_session = os.getsid(0)
        self._loops_with_handler: set[int] = set()
        self._subreaper = False
        self._last_scan = 0.0
        self._exits = 0
        self._children: tuple[int, set[int]] | None = None

    def spawn_reserved(self, spawn: Callable[[], P]) -> P:
        """Run `spawn` (which starts a child and returns an object with its `pid`) and
        reserve that pid for a later `watch`, so that no stray scan reaps it meanwhile.
        Safe to call from any thread."""
        with self._lock:
            self._in_flight += 1
        child: P | None = None
        try:
            child = spawn()
        finally:
            with self._lock:
                self._in_flight -= 1
                if child is not None:
                    self._reserved.add(child.pid)
        return child

    def watch(self, pid: int, pidfd: int | None = None) -> asyncio.Future[ExitInfo]:
        """A future resolved with the exit of our own child `pid` (on the running loop);
        `pidfd`, when given, is a pidfd of it that the watch takes over."""
        loop = asyncio.get_running_loop()
        self._install_sigchld(loop)
        future: asyncio.Future[ExitInfo] = loop.create_future()
        if pidfd is None:
            pidfd = os.pidfd_open(pid)
        watch = read_watch(loop)
        with self._lock:
            self._watches[pid] = _Watch(watch, future, pidfd)
            self._reserved.discard(pid)
        watch.add(pidfd, functools.partial(self._collect_own, pid))
        return future

    def forget(self, pid: int) -> None:
        """Drop the reservation of `pid` (a spawned child reaped by its spawner itself)."""
        with self._lock:
            self._reserved.discard(pid)

    def is_watched(self, pid: int) -> bool:
        """Whether `pid` is one of our own commands' main processes, not yet reaped."""
        return pid in self._watches or pid in self._reserved

    def account(self, session: int | None, pid: int | None, accountant: Accountant | None) -> None:
        """Route exits of strays in `session` (or the single `pid`) to `accountant`;
        None stops routing."""
        with self._lock:
            for table, key in ((self._by_session, session), (self._by_pid, pid)):
                if key is None:
                    continue
                if accountant is None:
                    table.pop(key, None)
                else:
                    table[key] = accountant

    def _collect_own(self, pid: int) -> None:
        watch = self._watches.get(pid)
        if watch is None:
            return
        try:
            found, status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:  # reaped behind our back: the status is lost
            found, status, usage = pid, 255 << 8, None
        if found == 0:
            return
        with self._lock:
            self._watches.pop(pid, None)
            self._exits += 1
            number = self._exits
        watch.watch.remove(watch.pidfd)
        os.close(watch.pidfd)
        if not watch.future.done():
            watch.future.set_result(ExitInfo(pid, status, usage, number))

    def children_since(self, exit_number: int) -> set[int]:
        """Our children, orphans included (see `procfs.reparented_children`), as found
        by a look taken after the exit numbered `exit_number` (`ExitInfo.number`) was
        collected: the orphans a command left when it exited are among them. One look
        serves every command whose exit came before it - a thousand ending a second
        need not make a thousand."""
        with self._lock:
            children = self._children
            if children is not None and children[0] >= exit_number:
                return children[1]
            exits = self._exits
        found = reparented_children()
        with self._lock:
            if self._children is None or self._children[0] < exits:
                self._children = (exits, found)
        return found

    def unwatched(self, children: set[int]) -> list[int]:
        """The pids among `children` that are not our own commands' main processes."""
        return [pid for pid in children if pid not in self._watches and pid not in self._reserved]

    def reap_strays(self, candidates: list[int] | None = None) -> None:
        """Reap every dead child that is not ours to leave (see the module docstring);
        only among `candidates` (unwatched children) when given."""
        everything = os.getpid() == 1
        reaped: list[tuple[Accountant, ExitInfo]] = []
        with self._lock:
            if self._in_flight:
                return  # a child being spawned may look like a stray: scan next time
            self._last_scan = time.monotonic()
            if candidates is None:
                candidates = self.unwatched(reparented_children())
            for pid in candidates:
                if pid in self._watches or pid in self._reserved:
                    continue
                stat = read_stat(pid)
                if stat is None or stat.state not in ("Z", "X"):
                    continue
                if stat.session == self._own_session and not everything:
                    continue
                try:
                    found, status, usage = os.wait4(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if found == 0:
                    continue
                accountant = self._by_pid.pop(pid, None) or self._by_session.get(stat.session)
                if accountant is not None:
                    reaped.append((accountant, ExitInfo(pid, status, usage)))
        for accountant, info in reaped:  # outside the lock: an accountant may call back in
            accountant(info)

    def reap_strays_now_and_then(self) -> None:
        """`reap_strays()`, at most every few milliseconds while other commands of ours
        are running (one of them scans later); at once when none is."""
        now = time.monotonic()
        if self._watches and now - self._last_scan < _SCAN_INTERVAL:
            return
        self.reap_strays()

    def become_subreaper(self) -> None:
        """Make orphaned descendants of our commands come back to this process."""
        if self._subreaper:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(error)}")
        self._subreaper = True

    def adopt(self, pid: int) -> None:
        """Reap the stray `pid` (a living orphan left to run) as soon as it exits."""
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.reap_strays()
            return

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self.reap_strays()

        loop.add_reader(pidfd, exited)

    def _install_sigchld(self, loop: asyncio.AbstractEventLoop) -> None:
        # As PID 1 every orphan of the container comes here: reap on SIGCHLD. Otherwise
        # the runs' own scans and `adopt` suffice, and a SIGCHLD handler would only wake
        # the loop once per exit (and overflow its wakeup pipe under a spawn storm).
        if id(loop) in self._loops_with_handler:
            return
        self._loops_with_handler.add(id(loop))
        if os.getpid() == 1 and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
                loop.add_signal_handler(signal.SIGCHLD, self.reap_strays)


_REAPER: Reaper | None = None


def reaper() -> Reaper:
    """The process-wide reaper."""
    global _REAPER
    if _REAPER is None:
        _REAPER = Reaper()
    return _REAPER
