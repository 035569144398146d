"""A cgroup v2 group per run, where this machine lets us create one.

Inside its cgroup a run cannot escape (setsid, double fork, a cleared environment: all
still counted), `cgroup.kill` ends every process at once, and `cpu.stat` is the exact CPU
of the whole tree. Groups are made below this process's own cgroup, in `evercron-runs/`;
when that is not writable (no cgroup v2, no delegation, not root) `discover()` returns
None and runs are tracked by session and `EVERCRON_RUN_ID` instead. Setting the
environment variable `EVERCRON_CGROUPS=off` forces that fallback (and
`EVERCRON_CGROUP_JOIN=shell` the `/bin/sh` join described below).

A command is in its cgroup before it runs (moving it after it started would miss the
children it forked meanwhile; Python cannot clone into a cgroup). Where this process may
move itself (it can write its own cgroup's `cgroup.procs`, e.g. systemd `Delegate=yes`),
it steps into the run's group for the instant of the fork (`RunCgroup.hosting`), so the
child is born there; other forks of the process wait meanwhile (`FORK_GATE`), and no
group is killed while this process is inside one. Otherwise - and for held starts and
/bin/sh command lines, which need no visit - the command goes through `/bin/sh -c`, which
writes its own pid to `cgroup.procs` first.

Runs with `max_processes` or `max_memory` get those limits on their group (or on a group
of the same name in a cgroup v1 hierarchy: see `controllers.py`); such a run is never
hosted - this process must not count against its limits, even for an instant - but
joins by its `/bin/sh`.

The scheduler gives up the cgroup in one case: at an instant so crowded with firings that
CPU bounds how soon they start, a command that needs no shell is started without one (see
`Launcher.launch`), and its run is tracked by session and `EVERCRON_RUN_ID` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from evercron.process.controllers import (
    MAX_MEMORY,
    MAX_PROCESSES,
    GroupLimits,
    LimitError,
    LimitSupport,
    find_controllers,
    none_available,
)
from evercron.process.fork_gate import FORK_GATE
from evercron.process.procfs import read_stat

_POOL_SIZE = 4096


class CgroupError(RuntimeError):
    """This process could not return to its own cgroup after visiting a run's group."""


class RunCgroup:
    """One run's cgroup directory (reused by later runs once empty), with the groups of
    the same name in cgroup v1 hierarchies where its limits are set there."""

    def __init__(
        self,
        path: Path,
        cpu_before: tuple[float, float] | None = None,
        root: CgroupRoot | None = None,
        limits: GroupLimits | None = None,
    ) -> None:
        self.path = path
        self.root = root
        self.limits = limits or GroupLimits()
        self.wanted: dict[str, int] = {}
        """The limits of this run (settings this machine enforces only)."""
        self.v1_procs: list[str] = []
        """The v1 groups' `cgroup.procs` files the command joins after its own group."""
        # Plain strings and os-level reads: these files are read several times per run.
        self._procs = f"{path}/cgroup.procs"
        self._events = f"{path}/cgroup.events"
        self._cpu_stat = f"{path}/cpu.stat"
        self._cpu_before = cpu_before or self._read_cpu() or (0.0, 0.0)
        self._cpu_after: tuple[float, float] | None = None

    @property
    def procs_path(self) -> str:
        """The file a process writes its pid to in order to join the group."""
        return self._procs

    def pids(self) -> list[int]:
        """Processes in the group (exited ones are not)."""
        raw = _read_small(self._procs)
        return [] if raw is None else [int(p) for p in raw.split()]

    def populated(self) -> bool:
        """Whether any process is left in the group."""
        events = _read_small(self._events)
        if events is None:
            return bool(self.pids())
        return b"populated 1" in events

    @property
    def directories(self) -> list[str]:
        """Every group directory the run's processes are in: its own, then v1 ones."""
        return [str(self.path), *(os.path.dirname(procs) for procs in self.v1_procs)]

    @property
    def can_host(self) -> bool:
        """Whether this process can step into the group to fork a child there (never
        into a limited one: this process must not count against its limits)."""
        return self.root is not None and self.root.can_host and not self.wanted

    def limits_acted(self) -> dict[str, int]:
        """How often each limit of the run acted (see `GroupLimits.acted`); call once,
        when the run is over."""
        if not self.wanted or self.root is None:
            return {}
        return self.limits.acted(self.path, self.root.support.controllers, self.wanted)

    @contextlib.contextmanager
    def hosting(self) -> Iterator[None]:
        """Run the block with this whole process inside the group: a child forked in it
        starts in the group. Other forks wait; raises `CgroupError` if the process cannot
        get back to its own cgroup."""
        assert self.root is not None
        with FORK_GATE.exclusive():
            try:
                self.root.visit(self._procs)
            except FileNotFoundError:  # a pooled group removed behind our back
                self.ensure()
                self.root.visit(self._procs)
            try:
                yield
            finally:
                self.root.return_home()

    def ensure(self) -> None:
        """Make the group's directory again if it was removed since it was made."""
        # A stat first: a mkdir of an existing group waits on the parent directory's lock.
        if not os.path.isdir(self.path):
            with contextlib.suppress(FileExistsError):
                self.path.mkdir()

    def signal(self, signum: int) -> None:
        """Send `signum` to every process in the group (`cgroup.kill` for SIGKILL)."""
        with FORK_GATE.shared():  # never while this process visits the group
            if signum == signal.SIGKILL and (self.path / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (self.path / "cgroup.kill").write_text("1")
                    return
            own = os.getpid()
            for pid in self.pids():
                if pid != own:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signum)

    def cpu_times(self) -> tuple[float, float] | None:
        """User and system CPU seconds of everything that ran in the group for this run."""
        now = self._cpu_after = self._read_cpu()
        if now is None:
            return None
        return now[0] - self._cpu_before[0], now[1] - self._cpu_before[1]

    @property
    def cpu_reading(self) -> tuple[float, float] | None:
        """The group's total CPU at the last `cpu_times()` call (the next run's baseline)."""
        return self._cpu_after

    def _read_cpu(self) -> tuple[float, float] | None:
        raw = _read_small(self._cpu_stat)
        if raw is None:
            return None
        stats = dict(line.split() for line in raw.split(b"\n") if line.count(b" ") == 1)
        if b"user_usec" not in stats or b"system_usec" not in stats:
            return None
        return int(stats[b"user_usec"]) / 1e6, int(stats[b"system_usec"]) / 1e6


def _read_small(path: str) -> bytes | None:
    """The whole content of a small kernel file, or None when it cannot be read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(descriptor, 65536)
    except OSError:
        return None
    finally:
        os.close(descriptor)


_Limits = tuple[int | None, int | None]
_Pooled = tuple[Path, tuple[float, float] | None, GroupLimits]


class CgroupRoot:
    """The directory below which run cgroups live. Empty groups are kept in a small pool
    and reused: creating a cgroup and moving the first process into it costs far more than
    joining one that exists. The pool is kept by limits, so that a group is given to a
    run with the limits it has already whenever one is free."""

    def __init__(self, path: Path, support: LimitSupport | None = None) -> None:
        self.path = path
        self.can_host = False
        self.support = support or none_available("not looked for")
        """Which limits run groups get, and how (see `controllers.py`)."""
        self._home_procs = str(path.parent / "cgroup.procs")
        self._idle: dict[_Limits, list[_Pooled]] = {}
        self._pooled = 0
        self._numbers = itertools.count(1)
        stat = read_stat(os.getpid())
        self._prefix = f"{os.getpid()}-{stat.start_ticks if stat else 0}"
        atexit.register(self.close)

    def close(self) -> None:
        """Remove the pooled (empty) groups, and the v1 directories of run groups if no
        other process has groups there; called at exit."""
        for pooled in self._idle.values():
            while pooled:
                path, _, limits = pooled.pop()
                _remove(path, limits)
        self._pooled = 0
        for v1_root in self.support.sweepable_roots():
            with contextlib.suppress(OSError):
                v1_root.rmdir()

    def sweep(self) -> int:
        """Remove groups left by processes that are gone (an empty group of a dead owner),
        in the v1 hierarchies too; return how many went."""
        removed = 0
        for root in (self.path, *self.support.sweepable_roots()):
            with contextlib.suppress(OSError):
                for entry in root.iterdir():
                    if not entry.is_dir() or _owner_alive(entry.name):
                        continue
                    with contextlib.suppress(OSError):
                        entry.rmdir()  # fails (EBUSY) while a process is still in it
                        removed += 1
        return removed

    def acquire(
        self, max_processes: int | None = None, max_memory: int | None = None
    ) -> RunCgroup | None:
        """An empty cgroup for one run with these limits (those this machine enforces),
        or None if none can be made. Raises `LimitError` when a limit cannot be set."""
        controllers = self.support.controllers
        wanted = {}
        if max_processes is not None and MAX_PROCESSES in controllers:
            wanted[MAX_PROCESSES] = max_processes
        if max_memory is not None and MAX_MEMORY in controllers:
            wanted[MAX_MEMORY] = max_memory
        pooled = self._take((wanted.get(MAX_PROCESSES), wanted.get(MAX_MEMORY)))
        if pooled is not None:  # (a group removed meanwhile is made again when joined)
            try:
                return self._limited(RunCgroup(pooled[0], pooled[1], self, pooled[2]), wanted)
            except LimitError:
                pass  # that one is removed: a new group may do
        path = self.path / f"{self._prefix}-{next(self._numbers)}"
        try:
            path.mkdir()
        except OSError as error:
            if wanted:
                message = f"cannot make a cgroup for the run in {self.path}: {error.strerror}"
                raise LimitError(message) from None
            return None
        return self._limited(RunCgroup(path, (0.0, 0.0), self), wanted)  # (no CPU used yet)

    def _limited(self, group: RunCgroup, wanted: dict[str, int]) -> RunCgroup:
        """`group` with the limits `wanted` set; removed when they cannot be."""
        if self.support.controllers:
            try:
                group.v1_procs = group.limits.prepare(group.path, self.support.controllers, wanted)
            except LimitError:
                _remove(group.path, group.limits)
                raise
            group.wanted = wanted
        return group

    def _take(self, key: _Limits) -> _Pooled | None:
        """A pooled group, preferably one whose limits are `key` already."""
        pooled = self._idle.get(key)
        if not pooled:
            pooled = next((groups for groups in self._idle.values() if groups), None)
            if pooled is None:
                return None
        self._pooled -= 1
        return pooled.pop()

    def visit(self, procs_file: str | Path) -> None:
        """Move this whole process into the group of `procs_file` (hold `FORK_GATE`
        exclusively)."""
        descriptor = os.open(procs_file, os.O_WRONLY)
        try:
            os.write(descriptor, str(os.getpid()).encode())
        finally:
            os.close(descriptor)

    def return_home(self) -> None:
        """Move this process back to its own cgroup; raises `CgroupError` if it cannot."""
        error: OSError | None = None
        for _ in range(3):
            try:
                self.visit(self._home_procs)
                return
            except OSError as failure:
                error = failure
        home = os.path.dirname(self._home_procs)
        raise CgroupError(f"cannot return to cgroup {home}: {error}")

    def probe_hosting(self) -> bool:
        """Find out whether this process may step into run groups and back."""
        probe = self.path / f"probe-host-{os.getpid()}"
        try:
            probe.mkdir(exist_ok=True)
            with FORK_GATE.exclusive():
                self.visit(probe / "cgroup.procs")
                self.return_home()
            self.can_host = True
        except (OSError, CgroupError):
            self.can_host = False
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
        return self.can_host

    def release(self, cgroup: RunCgroup, empty: bool) -> None:
        """Give back a run's cgroup (`empty`: known to have no process left): pooled,
        else removed."""
        if self._pooled < _POOL_SIZE and (empty or not cgroup.populated()):
            key = (cgroup.wanted.get(MAX_PROCESSES), cgroup.wanted.get(MAX_MEMORY))
            self._idle.setdefault(key, []).append((cgroup.path, cgroup.cpu_reading, cgroup.limits))
            self._pooled += 1
        else:
            _remove(cgroup.path, cgroup.limits)


def _remove(path: Path, limits: GroupLimits) -> None:
    """Remove a run group and its v1 groups (each fails while a process is in it)."""
    with contextlib.suppress(OSError):
        path.rmdir()
    limits.remove()


_discovered: dict[int, CgroupRoot | None] = {}


def discover() -> CgroupRoot | None:
    """The per-run cgroup root of this process, or None when runs cannot have cgroups."""
    key = os.getpid()  # a forked child has its own answer
    if key not in _discovered:  # looked up once: reading os.environ per run costs
        _discovered[key] = None if _turned_off() else _find_root()
    return _discovered[key]


def limit_support() -> LimitSupport:
    """Which of `max_processes` and `max_memory` runs get on this machine, and how (or
    why not)."""
    root = discover()
    if root is not None:
        return root.support
    if _turned_off():
        return none_available("cgroups turned off (EVERCRON_CGROUPS=off)")
    return none_available("runs get no cgroup here (no writable cgroup v2 tree)")


def _turned_off() -> bool:
    return os.environ.get("EVERCRON_CGROUPS", "").lower() in ("0", "off", "no", "false")


def _find_root() -> CgroupRoot | None:
    mount = _cgroup2_mount()
    own = _own_cgroup()
    if mount is None or own is None:
        return None
    root = Path(mount) / own.lstrip("/") / "evercron-runs"
    try:
        root.mkdir(exist_ok=True)
        probe = root / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError:
        return None
    found = CgroupRoot(root, find_controllers(root))
    found.sweep()
    if os.environ.get("EVERCRON_CGROUP_JOIN", "").lower() != "shell":
        found.probe_hosting()
    return found


def _owner_alive(name: str) -> bool:
    """Whether the process that made group `name` (`<pid>-<start ticks>-<n>`) still runs."""
    parts = name.split("-")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return False
    stat = read_stat(int(parts[0]))
    return stat is not None and stat.start_ticks == int(parts[1])


def _cgroup2_mount() -> str | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            return before.split()[4]
    return None


def _own_cgroup() -> str | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return line[3:]
    return None
