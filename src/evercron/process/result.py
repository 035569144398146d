"""How a command ended."""

from __future__ import annotations

import datetime as dt
import enum
import signal as signals
from dataclasses import dataclass

from evercron.process.capture import CapturedOutput


class Status(enum.StrEnum):
    """The outcome of one command."""

    SUCCEEDED = "succeeded"
    """The main process exited with code 0."""
    FAILED = "failed"
    """It exited non-zero, died of a signal evercron did not send (the kernel's SIGKILL
    for exceeding `max_memory` included), or could not start."""
    TIMED_OUT = "timed_out"
    """Its deadline passed and evercron ended it."""
    KILLED = "killed"
    """evercron ended it on request (an explicit kill or a cancelled wait)."""


@dataclass(frozen=True)
class Result:
    """Everything known about a finished command.

    `exit_code` is the main process's (None when it died of a signal, then `signal` names
    it, e.g. "SIGKILL", or when it never started). `kill_signal` is the strongest signal
    evercron had to send to end the tree ("SIGTERM", "SIGKILL") or None. CPU times cover the
    whole tree (exactly with a per-run cgroup; else as far as it was reaped here).
    `error` says why it could not start, or what its cgroup limits did: processes the
    kernel killed for exceeding `max_memory` (the main process among them when `signal`
    is "SIGKILL" and evercron sent none), forks refused at `max_processes`.
    `max_rss_kb` is the largest single process as the kernel reports it (`ru_maxrss`);
    Linux counts a child's memory from before its exec too, so for small commands it is at
    least the peak RSS of the process that started them.
    """

    status: Status
    exit_code: int | None
    signal: str | None
    pid: int | None
    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    duration: float
    cpu_user: float
    cpu_system: float
    max_rss_kb: int
    output: CapturedOutput
    error: str | None = None
    kill_signal: str | None = None

    @property
    def shell_exit_code(self) -> int:
        """The exit code `timeout(1)` would give: 124 when the deadline fired, 128+N for
        death by signal N, 125 when evercron could not start it, else the command's own."""
        if self.status is Status.TIMED_OUT:
            return 124
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return 128 + int(signals.Signals[self.signal])
        return 125
