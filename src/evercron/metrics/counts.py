"""Per-job run metrics as this daemon process counts them, kept as running totals in the
store so that they never go backwards across a hot upgrade or a restart.

`RunMetrics` is a `RunObserver`: the scheduler tells it each start (the start delay),
recorded end (runs by status and trigger, the duration, the last success and failure)
and missed firing; the notification dispatcher tells it each delivery attempt. Every
second the values that changed are written to the store under this process's owner key
(`flush`); a scrape adds this process's own values to the totals of every other process
of the node (`Store.metric_totals`), so a successor's counters start where its
predecessor's stood and grow with what the draining predecessor still counts.

Series keys are the metric's short name and its label values, `|`-separated (job and
channel names cannot hold a `|`): `runs_total|backup|failed|schedule`,
`run_duration_seconds|backup|3` (a histogram bucket's index), `last_success|backup`.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping

from evercron.model import FAILURES, RunStatus
from evercron.scheduler.observer import RunEnded, RunStarted
from evercron.store import Store, StoreError, Total, TotalKind

log = logging.getLogger("evercron.metrics")

DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0,
    21600.0,
)  # fmt: skip
"""Run durations: 10 ms to 6 h (cron work, from a `touch` to a nightly backup)."""
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
"""Start delays: 1 ms to 60 s (the default misfire_grace)."""

RUNS = "runs_total"
DURATION = "run_duration_seconds"
DELAY = "run_start_delay_seconds"
MISSED = "firings_missed_total"
NOTIFICATIONS = "notifications_total"
LAST_SUCCESS = "last_success"
LAST_FAILURE = "last_failure"
_LATEST = (LAST_SUCCESS, LAST_FAILURE)


def series(*parts: str) -> str:
    """The store's key of one series: its name and label values."""
    return "|".join(parts)


def kind_of(key: str) -> TotalKind:
    """How a series' values of several processes combine: timestamps by the latest,
    everything else (counters, histogram buckets and sums) by adding up."""
    return TotalKind.MAX if key.split("|", 1)[0] in _LATEST else TotalKind.SUM


def combine(key: str, first: float, second: float) -> float:
    """Two processes' values of one series as one."""
    return max(first, second) if kind_of(key) is TotalKind.MAX else first + second


def job_of(key: str) -> str:
    """The job a series is about ("" for the notification series, which are a channel's)."""
    name, _, rest = key.partition("|")
    return "" if name == NOTIFICATIONS else rest.partition("|")[0]


class RunMetrics:
    """This process's counts (a `RunObserver`)."""

    def __init__(self, owner: str, node: str) -> None:
        self.owner = owner
        self.node = node
        self._values: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._by_job: dict[str, dict[str, float]] = {}
        self.versions: dict[str, int] = {}
        """How often each job's values changed: a scrape re-renders only changed jobs."""
        self._refused = False  # the store refused the last flush (said once)

    def run_started(self, started: RunStarted) -> None:
        """A start delay for the histogram (scheduled firings only)."""
        if started.delay is not None:
            self._observe(DELAY, DELAY_BUCKETS, started.job.name, max(0.0, started.delay))

    def run_ended(self, ended: RunEnded) -> None:
        """Count the end; its duration, and the time of the last success or failure."""
        self._add(series(RUNS, ended.job, str(ended.status), str(ended.trigger)), 1)
        if ended.duration is not None:
            self._observe(DURATION, DURATION_BUCKETS, ended.job, ended.duration)
        moment = ended.finished_at.timestamp()
        if ended.status is RunStatus.SUCCEEDED:
            self._latest(series(LAST_SUCCESS, ended.job), moment)
        elif ended.status in FAILURES:
            self._latest(series(LAST_FAILURE, ended.job), moment)

    def firings_missed(self, job: str, count: int) -> None:
        """Count firings missed for being too late."""
        self._add(series(MISSED, job), count)

    def notification(self, channel: str, outcome: str) -> None:
        """Count a delivery attempt's outcome (sent, failed, given_up, suppressed)."""
        self._add(series(NOTIFICATIONS, channel, outcome), 1)

    def values(self) -> Mapping[str, float]:
        """This process's own values, by series key."""
        return self._values

    def of_job(self, job: str) -> dict[str, float]:
        """A copy of this process's values of one job's series ("": the channels')."""
        return dict(self._by_job.get(job, {}))

    def take_changes(self) -> dict[str, Total]:
        """The series changed since the last call, with their absolute values."""
        changed = {key: Total(kind_of(key), self._values[key]) for key in self._dirty}
        self._dirty.clear()
        return changed

    async def flush(self, store: Store) -> None:
        """Write what changed now; what the store refused stays to be written next time."""
        changes = self.take_changes()
        if not changes:
            return
        try:
            await store.save_metric_totals(self.node, self.owner, changes)
        except StoreError as error:
            self._dirty.update(changes)
            if not self._refused:
                log.warning("metric totals not saved, tried again every second: %s", error)
            self._refused = True
            return
        if self._refused:
            log.info("metric totals saved again")
        self._refused = False

    def _add(self, key: str, amount: float) -> None:
        self._set(key, self._values.get(key, 0.0) + amount)

    def _latest(self, key: str, moment: float) -> None:
        if moment > self._values.get(key, 0.0):
            self._set(key, moment)

    def _set(self, key: str, value: float) -> None:
        self._values[key] = value
        self._dirty.add(key)
        job = job_of(key)
        self._by_job.setdefault(job, {})[key] = value
        self.versions[job] = self.versions.get(job, 0) + 1

    def _observe(self, name: str, buckets: tuple[float, ...], job: str, value: float) -> None:
        """One observation: its bucket (the first bound >= value; len = +Inf) and sum."""
        self._add(series(name, job, str(bisect.bisect_left(buckets, value))), 1)
        self._add(series(name + "_sum", job), value)
