"""A run's process tree, and ending it: SIGTERM, grace, SIGKILL, until nothing is left.

With a cgroup (see `cgroup.py`) the tree is exactly the cgroup's processes. Without one,
it is the run's process group (its main process leads a new session) plus the descendants
that left it: they come back to us as orphans (we are a child subreaper) and are
recognized among our own children only, by the run's session id or by `EVERCRON_RUN_ID`
in their environment - never by a scan of all of /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from evercron.process.cgroup import RunCgroup
from evercron.process.procfs import environ_has, read_stat, reparented_children
from evercron.process.reaper import Accountant, Reaper

_POLL_FIRST = 0.002
_POLL_MAX = 0.05
_UNDECIDED_CHECKS = 10


class ProcessTree:
    """The processes of one run, led by `main_pid` (which is also its group and session)."""

    def __init__(
        self,
        main_pid: int,
        run_id: str,
        reaper: Reaper,
        accountant: Accountant | None = None,
        cgroup: RunCgroup | None = None,
    ) -> None:
        self.main_pid = main_pid
        self.cgroup = cgroup
        self._marker = f"EVERCRON_RUN_ID={run_id}".encode()
        self._reaper = reaper
        self._accountant = accountant
        self._known: set[int] = set()
        self._undecided: dict[int, int] = {}
        self._own_session = os.getsid(0)
        self._had_leftovers = False

    @property
    def known_strays(self) -> frozenset[int]:
        """Pids recognized as this run's strays so far (alive or not)."""
        return frozenset(self._known)

    def strays(self, candidates: list[int] | None = None) -> list[int]:
        """Living descendants that were reparented to us (outside the group or not), among
        `candidates` (our unwatched children) when given."""
        if self.cgroup is not None:  # exact: nothing leaves its cgroup
            return [pid for pid in self.cgroup.pids() if pid != self.main_pid]
        if candidates is None:
            candidates = self._reaper.unwatched(reparented_children())
        found = []
        for pid in candidates:
            if pid == self.main_pid:
                continue
            stat = read_stat(pid)
            if stat is None or stat.state in ("Z", "X"):
                continue
            if pid in self._known or stat.session == self.main_pid:
                belongs: bool | None = True
            else:
                belongs = environ_has(pid, self._marker)
            if belongs is None and stat.session != self._own_session:
                # Unreadable right now (e.g. in the middle of an exec): look again soon.
                self._undecided[pid] = self._undecided.get(pid, 0) + 1
            if belongs:
                self._undecided.pop(pid, None)
                if pid not in self._known:
                    self._known.add(pid)
                    self._reaper.account(None, pid, self._accountant)
                found.append(pid)
        return found

    def group_alive(self) -> bool:
        """Whether any process (a zombie included) is still in the run's process group."""
        try:
            os.killpg(self.main_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def alive(self, after_exit: int | None = None) -> bool:
        """Whether anything of the tree is left (reaping its dead strays on the way).

        A child whose environment cannot be read yet counts as alive for a few checks, so
        that an escapee caught in the middle of an exec is not missed. `after_exit`: the
        main process's `ExitInfo.number`, when this is the first look since it exited (a
        look at our children may then be shared with other runs)."""
        if self.cgroup is not None:
            # Exact without a scan of our children. Strays that came back to us and died
            # are our zombies: reaped at once when the tree had leftovers; else (the
            # usual case: none) by a scan that many runs ending together share.
            if self.cgroup.populated():
                self._had_leftovers = True
                self._reaper.reap_strays()
                return True
            if self._reaper.is_watched(self.main_pid):
                return True  # running, and not in its group yet (a /bin/sh about to join)
            if self._had_leftovers:
                self._reaper.reap_strays()
            else:
                self._reaper.reap_strays_now_and_then()
            return False
        if after_exit is None:
            children = reparented_children()
        else:
            children = self._reaper.children_since(after_exit)
        candidates = self._reaper.unwatched(children)
        if candidates:
            self._reaper.reap_strays(candidates)
        if candidates and self.strays(candidates):
            return True
        living = set(candidates)
        if any(p in living and n <= _UNDECIDED_CHECKS for p, n in self._undecided.items()):
            return True
        return self.group_alive()

    def signal(self, signum: int, main_only: bool = False) -> None:
        """Send `signum` to the main process only, or to the group and every stray."""
        if self.cgroup is not None and not main_only:
            self.cgroup.signal(signum)
        targets = [] if main_only else self.strays()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if main_only:
                os.kill(self.main_pid, signum)
            else:
                os.killpg(self.main_pid, signum)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    async def terminate(
        self, grace: float, main_only: bool = False, after_exit: int | None = None
    ) -> str | None:
        """End the tree: SIGTERM, then SIGKILL after `grace` seconds for what is left.

        Returns the strongest signal that had to be sent ("SIGTERM" or "SIGKILL"), or None
        when nothing was alive. With `main_only`, only the main process is signalled.
        `after_exit`: see `alive()` (for the end of a run whose main process exited).
        """
        if not self._left(main_only, after_exit):
            return None
        self.signal(signal.SIGTERM, main_only)
        strongest = "SIGTERM"
        deadline = time.monotonic() + grace
        signalled = set(self._known)
        pause = _POLL_FIRST
        while self._left(main_only):
            if strongest == "SIGTERM" and time.monotonic() >= deadline:
                strongest = "SIGKILL"
                self.signal(signal.SIGKILL, main_only)
            elif not main_only:
                # Orphans that appeared since (their parent just died) get the same signal.
                for pid in self.strays():
                    if pid not in signalled:
                        signalled.add(pid)
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(
                                pid, signal.SIGTERM if strongest == "SIGTERM" else signal.SIGKILL
                            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
        return strongest

    def _left(self, main_only: bool, after_exit: int | None = None) -> bool:
        if main_only:
            return self._reaper.is_watched(self.main_pid)
        return self.alive(after_exit)
