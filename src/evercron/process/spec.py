"""What to run: the immutable description of one command and the rules it runs under."""

from __future__ import annotations

import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Tracking = Literal["auto", "session"]
"""How a run's process tree is found: `auto` (default) uses a cgroup v2 group per run where
one can be created (exact, nothing escapes) and falls back to `session`: the run's session
plus orphans recognized by session or `EVERCRON_RUN_ID` (no extra exec per run)."""

KillMode = Literal["group", "main"]
"""`group` (default): when the main process exits, every descendant still alive is ended.
`main`: only the main process is ever signalled; leftovers survive (systemd KillMode=process).
"""

LIMITS: Mapping[str, int] = {
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
    "stack": resource.RLIMIT_STACK,
    "memlock": resource.RLIMIT_MEMLOCK,
}
"""Resource limits a command may set, by the names `prlimit(1)` uses."""

DEFAULT_KILL_GRACE = 10.0
DEFAULT_MAX_PROCESSES = 4096
"""The daemon's default `max_processes` for a job (a `Command` has no cap by default)."""
MAX_PROCESSES_LIMIT = 4_194_304
"""The highest `max_processes`: Linux's own limit on process ids (PID_MAX_LIMIT)."""
MAX_MEMORY_LIMIT = 2**63 - 1
"""The highest `max_memory` (the kernel reads larger numbers wrapped around)."""
DEFAULT_MAX_OUTPUT = 1024 * 1024
DEFAULT_SHELL = "/bin/sh"

Limit = int | tuple[int, int]


@dataclass(frozen=True)
class Command:
    """One command and how to run it. Validated on creation (`ValueError` on bad values).

    `args` is an argv list, run directly, or a string, run with `shell -c` (with the
    default /bin/sh, a line of evercron's own - joining the run's cgroup, waiting for a
    held start's release - may come first in the same shell; only `$LINENO` shows it).
    The environment
    is the runner's own plus `env` (or only `env` when `inherit_env` is false), and always
    `EVERCRON_RUN_ID`. `stdin` is fed to the command then closed (empty by default).
    `limits` maps names of `LIMITS` to a soft limit or a `(soft, hard)` pair. `user` and
    `group` need root. `timeout` and `kill_grace` are seconds; `max_output` is how many
    bytes of output are kept (the first and last halves).

    `max_processes` caps the processes (and threads) the run may have at once: a fork
    beyond it fails. `max_memory` caps its memory in bytes, swap included: beyond it the
    kernel kills one of its processes. Both are cgroup limits (see `controllers.py`) and
    need `tracking="auto"`; where this machine has no controller for one, it is not
    applied (`limit_support()` says which are).
    """

    args: Sequence[str] | str
    shell: str = DEFAULT_SHELL
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    inherit_env: bool = True
    stdin: bytes = b""
    umask: int | None = None
    nice: int | None = None
    limits: Mapping[str, Limit] = field(default_factory=dict)
    user: str | None = None
    group: str | None = None
    timeout: float | None = None
    kill_grace: float = DEFAULT_KILL_GRACE
    max_output: int = DEFAULT_MAX_OUTPUT
    kill_mode: KillMode = "group"
    tracking: Tracking = "auto"
    run_id: str | None = None
    max_processes: int | None = None
    max_memory: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.args, str):
            if not self.args.strip():
                raise ValueError("the command is empty")
        elif not self.args or not all(isinstance(a, str) for a in self.args):
            raise ValueError("the command needs at least one argument, all strings")
        texts = [self.args] if isinstance(self.args, str) else list(self.args)
        texts += [*self.env, *self.env.values(), self.shell, self.cwd or ""]
        if any("\0" in text for text in texts):
            raise ValueError("the command, its environment or directory contains a NUL character")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if not self.kill_grace >= 0:
            raise ValueError(f"kill_grace must be >= 0 seconds, got {self.kill_grace}")
        if self.max_output < 0:
            raise ValueError(f"max_output must be >= 0 bytes, got {self.max_output}")
        if self.tracking not in ("auto", "session"):
            raise ValueError(f'tracking must be "auto" or "session", got {self.tracking!r}')
        if self.kill_mode not in ("group", "main"):
            raise ValueError(f'kill_mode must be "group" or "main", got {self.kill_mode!r}')
        if self.umask is not None and not 0 <= self.umask <= 0o777:
            raise ValueError(f"umask must be between 0 and 0o777, got {self.umask!r}")
        if self.nice is not None and not -20 <= self.nice <= 19:
            raise ValueError(f"nice must be between -20 and 19, got {self.nice}")
        self._check_cgroup_limits()
        for name, value in self.limits.items():
            if name not in LIMITS:
                raise ValueError(f'unknown limit "{name}" (known: {", ".join(LIMITS)})')
            pair = value if isinstance(value, tuple) else (value, value)
            if len(pair) != 2 or any(not isinstance(v, int) or v < 0 for v in pair):
                raise ValueError(f'limit "{name}" must be a number >= 0 or a (soft, hard) pair')
            if pair[0] > pair[1]:
                raise ValueError(f'limit "{name}": soft {pair[0]} is above hard {pair[1]}')

    def _check_cgroup_limits(self) -> None:
        processes, memory = self.max_processes, self.max_memory
        if processes is not None and not (
            isinstance(processes, int) and 1 <= processes <= MAX_PROCESSES_LIMIT
        ):
            raise ValueError(
                f"max_processes must be a whole number from 1 to {MAX_PROCESSES_LIMIT}, "
                f"got {processes!r}"
            )
        if memory is not None and not (isinstance(memory, int) and 0 < memory <= MAX_MEMORY_LIMIT):
            raise ValueError(
                f"max_memory must be a number of bytes from 1 to {MAX_MEMORY_LIMIT}, got {memory!r}"
            )
        if self.tracking != "auto" and (processes is not None or memory is not None):
            raise ValueError('max_processes and max_memory need tracking="auto" (a cgroup)')

    @property
    def argv(self) -> list[str]:
        """The argument vector that is executed (the shell form for a string command)."""
        if isinstance(self.args, str):
            return [self.shell, "-c", self.args]
        return list(self.args)
