"""How late scheduled firings start, told to the operator without flooding the log.

An overloaded machine (or daemon) makes firings start late long before any is missed
(`misfire_grace`, 60 s by default): the first late start is logged at once, the rest are
summed up in at most one warning per `interval`. Missed firings are counted the same way.
The figures are also exported as metrics (the missed firings per job are counted by
`evercron.metrics`, told by the scheduler's run observers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("evercron.scheduler")

LATE_THRESHOLD = 1.0
"""A scheduled firing that starts more than this many seconds after its time is late."""
WARN_INTERVAL = 10.0
"""At most one warning about late (or missed) firings per this many seconds."""


class LagMonitor:
    """Counts late and missed firings and warns about them, rate-limited."""

    def __init__(
        self,
        threshold: float = LATE_THRESHOLD,
        interval: float = WARN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.interval = interval
        self._clock = clock
        self.last_lag = 0.0
        """Seconds after its time that the latest scheduled firing started."""
        self.late_total = 0
        """Scheduled firings that started more than `threshold` late, since start."""
        self.missed_total = 0
        """Scheduled firings not run because they could only start after their grace."""
        self._warned_at: float | None = None
        self._late = self._missed = 0
        self._worst = 0.0

    def started(self, job: str, lag: float) -> None:
        """A scheduled firing of `job` started `lag` seconds after its time."""
        self.last_lag = lag
        if lag <= self.threshold:
            return
        self.late_total += 1
        self._late += 1
        self._worst = max(self._worst, lag)
        self._maybe_warn(f"a firing of {job} started {lag:.1f}s late")

    def missed(self, job: str, lag: float, count: int = 1) -> None:
        """`count` scheduled firings of `job` were not run: recorded skipped, the
        latest `lag` seconds late."""
        self.missed_total += count
        self._missed += count
        self._worst = max(self._worst, lag)
        self._maybe_warn(f"a firing of {job} was missed ({lag:.1f}s late)")

    def _maybe_warn(self, latest: str) -> None:
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < self.interval:
            return
        if self._warned_at is None or (self._late + self._missed) == 1:
            summary = latest
        else:
            summary = (
                f"in the last {now - self._warned_at:.0f}s {self._late} firings started more "
                f"than {self.threshold:g}s late and {self._missed} were missed (up to "
                f"{self._worst:.1f}s late)"
            )
        log.warning("falling behind: %s; the machine or the daemon is overloaded", summary)
        self._warned_at = now
        self._late = self._missed = 0
        self._worst = 0.0
