"""Per-run limits through cgroup controllers: `max_processes` with the pids controller,
`max_memory` with the memory controller - wherever this machine lets us use them.

A run's limits go on the groups it is in (see `cgroup.py`), in one of two ways:

- cgroup v2 with the controller enabled for the run groups (`evercron-runs/` lists it in
  `cgroup.controllers`): the files are in the run's own v2 group - `pids.max`,
  `memory.max` and `memory.swap.max` (0: no swap on top of `max_memory`). pids is a
  threaded controller, which may be enabled below a cgroup that has processes, so it is
  switched on for this process's children where its cgroup has it; memory may not (the
  v2 "no internal processes" rule), so it must be enabled there already.
- cgroup v1 hierarchies (hybrid machines: v1 controllers beside the v2 tree used for
  tracking): a group of the same name below this process's own group in the
  controller's hierarchy, `evercron-runs/<name>`, which the command joins together
  with its v2 group - `pids.max`, and `memory.limit_in_bytes` with
  `memory.memsw.limit_in_bytes` (memory and swap together).

Elsewhere the limit is unavailable and `LimitSupport` says why. Limit files are written
when a pooled group gets a run whose limits differ from its previous run's, not per run.
How a limit acted is read from the kernel's counters afterwards: OOM kills
(`memory.events` / `memory.oom_control`: `oom_kill`) and refused forks (`pids.events`:
`max`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MAX_PROCESSES = "max_processes"
MAX_MEMORY = "max_memory"
SETTINGS = {MAX_PROCESSES: "pids", MAX_MEMORY: "memory"}
"""The job settings a controller enforces, and the controller's name."""


class LimitError(RuntimeError):
    """A limit could not be set on a run's group; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Controller:
    """Where one setting is enforced: the kernel controller, its cgroup version and, for
    v1, the directory in its hierarchy below which the run groups live."""

    setting: str
    name: str
    version: int
    v1_root: Path | None = None

    def __str__(self) -> str:
        return f"cgroup v{self.version} {self.name}"

    def directory(self, group: Path) -> Path:
        """The directory holding this controller's files for the run group `group`."""
        return group if self.v1_root is None else self.v1_root / group.name

    def write_limit(self, directory: Path, value: int | None) -> None:
        """Set the limit (None: none) in `directory`; raises `OSError`."""
        if self.name == "pids":
            _write(directory / "pids.max", "max" if value is None else str(value))
        elif self.version == 2:
            _write(directory / "memory.max", "max" if value is None else str(value))
            swap = directory / "memory.swap.max"
            if swap.exists():
                _write(swap, "max" if value is None else "0")
        else:
            _write_memory_v1(directory, value)

    def read_count(self, directory: Path) -> int | None:
        """How often the limit acted in `directory` so far (OOM kills, refused forks);
        None when the kernel does not say."""
        if self.name == "pids":
            return _counter(directory / "pids.events", b"max")
        events = "memory.events" if self.version == 2 else "memory.oom_control"
        return _counter(directory / events, b"oom_kill")


@dataclass(frozen=True)
class LimitSupport:
    """Which settings this machine enforces, with what, and why not where it does not."""

    controllers: Mapping[str, Controller]
    unavailable: Mapping[str, str]

    def describe(self) -> dict[str, str]:
        """Each setting: the controller enforcing it ("cgroup v1 pids", "cgroup v2
        memory") or "unavailable: <why>"."""
        return {
            setting: str(self.controllers[setting])
            if setting in self.controllers
            else f"unavailable: {self.unavailable.get(setting, 'unknown')}"
            for setting in SETTINGS
        }

    def unenforced(self, wanted: Mapping[str, int | None]) -> dict[str, str]:
        """The settings given a value in `wanted` that this machine cannot enforce, each
        with the reason."""
        return {
            setting: self.unavailable.get(setting, "unknown")
            for setting, value in wanted.items()
            if value is not None and setting not in self.controllers
        }

    def sweepable_roots(self) -> list[Path]:
        """The v1 directories of run groups (swept like the v2 one)."""
        return [c.v1_root for c in self.controllers.values() if c.v1_root is not None]


class GroupLimits:
    """The limit files of one run group, kept with it in the pool: the value set for
    each setting, the v1 directories made for it, and each counter's value at the end
    of the group's last run that had that limit."""

    def __init__(self) -> None:
        self._values: dict[str, int | None] = {}
        self._counts: dict[str, int] = {}
        self._v1_dirs: dict[str, Path] = {}

    @property
    def directories(self) -> list[Path]:
        """The v1 directories made for the group (removed with it)."""
        return list(self._v1_dirs.values())

    def prepare(
        self, group: Path, controllers: Mapping[str, Controller], wanted: Mapping[str, int]
    ) -> list[str]:
        """Set the limits `wanted` (settings without a value have none) for the group's
        next run, writing only what changed; the v1 `cgroup.procs` files the run must
        join. Raises `LimitError`."""
        joins = []
        for setting, controller in controllers.items():
            value = wanted.get(setting)
            if value is None:
                self._counts.pop(setting, None)  # (it may change unseen meanwhile)
                if controller.version == 1:
                    continue  # the run just does not join that group
            directory = group
            try:
                if value is not None:
                    directory = self._directory(group, controller)
                if self._values.get(setting) != value:
                    controller.write_limit(directory, value)
                    self._values[setting] = value
                if value is not None and setting not in self._counts:
                    self._counts[setting] = controller.read_count(directory) or 0
            except OSError as error:
                shown = format_limit(setting, value) if value is not None else "none"
                raise LimitError(
                    f"cannot set {setting} = {shown} with {controller} in {directory}: "
                    f"{error.strerror or error}"
                ) from None
            if controller.version == 1:
                joins.append(f"{directory}/cgroup.procs")
        return joins

    def acted(
        self, group: Path, controllers: Mapping[str, Controller], wanted: Mapping[str, int]
    ) -> dict[str, int]:
        """How often each limit of the run that just ended acted: OOM kills for
        `max_memory`, refused forks for `max_processes` (settings that did not act are
        left out)."""
        acted = {}
        for setting, value in wanted.items():
            controller = controllers.get(setting)
            if value is None or controller is None:
                continue
            now = controller.read_count(controller.directory(group))
            if now is None:
                continue
            before = self._counts.get(setting, now)
            self._counts[setting] = now
            if now > before:
                acted[setting] = now - before
        return acted

    def _directory(self, group: Path, controller: Controller) -> Path:
        if controller.v1_root is None:
            return group
        made = self._v1_dirs.get(controller.setting)
        if made is not None and os.path.isdir(made):  # (one stat: it may have been removed)
            return made
        directory = controller.directory(group)
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        except FileNotFoundError:  # its parent was removed by another process's exit
            controller.v1_root.mkdir(exist_ok=True)
            directory.mkdir(exist_ok=True)
        self._v1_dirs[controller.setting] = directory
        self._values.pop(controller.setting, None)  # a new group has no limit yet
        return directory

    def remove(self) -> None:
        """Remove the v1 directories (each fails while a process is still in it)."""
        for directory in self._v1_dirs.values():
            with contextlib.suppress(OSError):
                directory.rmdir()


def none_available(reason: str) -> LimitSupport:
    """Support for nothing, for one reason."""
    return LimitSupport({}, dict.fromkeys(SETTINGS, reason))


def find_controllers(v2_runs: Path) -> LimitSupport:
    """Where each setting can be enforced for run groups made in `v2_runs` (this
    process's `evercron-runs/` in the v2 tree): v2 first, else a v1 hierarchy."""
    found: dict[str, Controller] = {}
    unavailable: dict[str, str] = {}
    for setting, name in SETTINGS.items():
        v2_problem = _enable_v2(v2_runs, name)
        if v2_problem is None:
            found[setting] = Controller(setting, name, 2)
            continue
        v1_root, v1_problem = _v1_root(name)
        if v1_root is not None:
            found[setting] = Controller(setting, name, 1, v1_root)
        else:
            unavailable[setting] = f"{v2_problem}; {v1_problem}"
    return LimitSupport(found, unavailable)


def _enable_v2(runs: Path, name: str) -> str | None:
    """Make controller `name` available in every v2 run group; None when it is, else
    why not."""
    if name not in _words(runs / "cgroup.controllers"):
        parent = runs.parent
        if name not in _words(parent / "cgroup.controllers"):
            return f"no cgroup v2 {name} controller here"
        try:
            _write(parent / "cgroup.subtree_control", f"+{name}")
        except OSError as error:
            return f"cgroup v2 {name} controller not enabled below {parent}: {error.strerror}"
    if name not in _words(runs / "cgroup.subtree_control"):
        try:
            _write(runs / "cgroup.subtree_control", f"+{name}")
        except OSError as error:
            return f"cannot enable the cgroup v2 {name} controller in {runs}: {error.strerror}"
    return None


def _v1_root(name: str) -> tuple[Path | None, str]:
    """The writable `evercron-runs/` below this process's group in the v1 hierarchy of
    controller `name`, or None and why there is none."""
    mount = _v1_mount(name)
    own = _own_v1_group(name)
    if mount is None or own is None:
        return None, f"no cgroup v1 {name} hierarchy mounted"
    point, mount_root = mount
    if mount_root != "/" and (own == mount_root or own.startswith(f"{mount_root}/")):
        own = own[len(mount_root) :]  # a bind mount of a subtree (as in containers)
    root = Path(point) / own.lstrip("/") / "evercron-runs"
    probe = root / f"probe-{os.getpid()}"
    try:
        root.mkdir(exist_ok=True)
        probe.mkdir(exist_ok=True)
        try:
            Controller("", name, 1, root).write_limit(probe, None)
        finally:
            probe.rmdir()
    except OSError as error:
        return None, f"cgroup v1 {name} hierarchy not writable ({root}: {error.strerror})"
    return root, ""


def _v1_mount(name: str) -> tuple[str, str] | None:
    """Mount point and mount root of the v1 hierarchy that has controller `name`."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        kind, _, options = after.split(" ", 2) if after.count(" ") >= 2 else (after, "", "")
        if kind == "cgroup" and name in options.strip().split(","):
            fields = before.split()
            return fields[4], fields[3]
    return None


def _own_v1_group(name: str) -> str | None:
    """This process's group in the v1 hierarchy of controller `name`."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if name in controllers.split(","):
            return path
    return None


def _write_memory_v1(directory: Path, value: int | None) -> None:
    # memory+swap may never be below memory alone: raise it first when the limit goes
    # up, lower it last when the limit goes down (the first order that works).
    text = "-1" if value is None else str(value)
    limit, both = directory / "memory.limit_in_bytes", directory / "memory.memsw.limit_in_bytes"
    if not both.exists():  # no swap accounting: memory alone
        _write(limit, text)
        return
    try:
        _write(limit, text)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        _write(both, text)
        _write(limit, text)
        return
    _write(both, text)


def _write(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


def _words(path: Path) -> list[str]:
    with contextlib.suppress(OSError):
        return path.read_text().split()
    return []


def _counter(path: Path, key: bytes) -> int | None:
    """The value of line `key N` in a small kernel file."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError:
        return None
    for line in raw.split(b"\n"):
        name, _, value = line.partition(b" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


def format_limit(setting: str, value: int) -> str:
    """A setting's value as a user reads it: 50, or 512MiB / 100000000 bytes."""
    if setting != MAX_MEMORY:
        return str(value)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return f"{value} bytes"
