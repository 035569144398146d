"""One `/metrics` scrape: the daemon's gauges and the per-job metrics.

With a thousand jobs the text is some 30,000 lines, so a scrape stays off the event loop
that releases firings: what only the loop may touch (this process's counts, the next
fire times, the lateness figures) is copied in a moment, the store is read with a few
short reads, and the text is written in a worker thread. The totals of processes that
are gone are read once and kept (`compact` renews them); each scrape reads only the rows
of other living processes of the node (a draining generation), and writes anew only the
lines of jobs whose values changed. Measured by `bench/operations.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from evercron.metrics.counts import RunMetrics, combine
from evercron.metrics.exposition import job_fragments, render, split_by_job
from evercron.model import RunStatus
from evercron.scheduler import Scheduler
from evercron.store import MERGED, JobSchedule, Store


@dataclass(frozen=True)
class _Taken:
    """What a scrape reads: from the event loop's side, then from the store."""

    changed: dict[str, tuple[int, dict[str, float]]]
    """Jobs whose own values changed since the last scrape: (version, values)."""
    channels: dict[str, float]
    next_fires: dict[str, dt.datetime]
    running_here: int
    last_lag: float
    late_total: int
    late_threshold: float
    jobs: list[JobSchedule]
    living: dict[str, dict[str, float]]
    """The totals of the node's other living processes, by job."""
    running: Counter[str]
    recent: dict[RunStatus, int]


class Scraper:
    """Renders `/metrics` for one daemon process."""

    def __init__(
        self, store: Store, scheduler: Scheduler, counts: RunMetrics, started: dt.datetime
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._counts = counts
        self._started = started
        self._merged: dict[str, dict[str, float]] | None = None
        self._merged_generation = 0
        self._own: dict[str, tuple[int, dict[str, float]]] = {}  # job -> (version, values)
        self._fragments: dict[str, tuple[tuple[int, int, bool], tuple[str, ...]]] = {}
        self._lock = asyncio.Lock()  # one render at a time; compaction waits for it

    async def text(self) -> str:
        """The whole exposition text."""
        async with self._lock:
            counts, known = self._counts, self._own
            lag = self._scheduler.launcher.lag
            changed = {
                job: (version, counts.of_job(job))
                for job, version in counts.versions.items()
                if job and known.get(job, (-1, {}))[0] != version
            }
            channels, next_fires = counts.of_job(""), dict(self._scheduler.next_fires)
            running_here = len(self._scheduler.running_runs())
            last_lag, late_total, threshold = lag.last_lag, lag.late_total, lag.threshold
            store, node = self._store, counts.node
            if self._merged is None:
                self._merged = split_by_job((await store.merged_metric_totals(node)).items())
            living = await store.metric_totals(node, exclude={MERGED, counts.owner})
            taken = _Taken(
                changed,
                channels,
                next_fires,
                running_here,
                last_lag,
                late_total,
                threshold,
                jobs=await store.job_schedules(),
                living=split_by_job(living.items()),
                running=Counter(running.run.job for running in await store.running()),
                recent=await store.recent_status_counts(1000),
            )
            return await asyncio.to_thread(self._render, taken, self._merged)

    async def compact(self, keep: Collection[str]) -> None:
        """Merge the totals of the node's processes not in `keep` (gone) and read the
        merged ones anew - between two scrapes, so that none counts a total twice or
        not at all."""
        async with self._lock:
            if await self._store.compact_metric_totals(self._counts.node, keep):
                self._merged = None
                self._merged_generation += 1

    def _render(self, taken: _Taken, merged: Mapping[str, Mapping[str, float]]) -> str:
        """In a worker thread: add the counts up and write the text."""
        self._own.update(taken.changed)
        fragments, cache = {}, {}
        for job in taken.jobs:
            name = job.name
            version, own = self._own.get(name, (0, {}))
            key = (self._merged_generation, version, name in taken.living)
            cached = self._fragments.get(name)
            if cached is None or cached[0] != key or name in taken.living:
                values = _added(merged.get(name, {}), taken.living.get(name, {}), own)
                cached = (key, job_fragments(name, values))
            cache[name] = cached
            fragments[name] = cached[1]
        self._fragments = cache  # (deleted jobs leave it)
        channels = _added(merged.get("", {}), taken.living.get("", {}), taken.channels)
        per_job = render(taken.jobs, fragments, taken.next_fires, taken.running, channels)
        return _daemon_gauges(taken, self._started) + per_job


def _added(base: Mapping[str, float], *more: Mapping[str, float]) -> dict[str, float]:
    """Totals of several processes as one (each series by its kind)."""
    totals = dict(base)
    for values in more:
        for key, value in values.items():
            totals[key] = combine(key, totals[key], value) if key in totals else value
    return totals


def _daemon_gauges(taken: _Taken, started: dt.datetime) -> str:
    uptime = (dt.datetime.now(dt.UTC) - started).total_seconds()
    jobs: Sequence[JobSchedule] = taken.jobs
    gauges = [
        ("evercron_jobs", "Jobs defined", len(jobs)),
        ("evercron_jobs_paused", "Jobs paused", sum(1 for job in jobs if job.paused)),
        ("evercron_runs_running", "Runs running in this process", taken.running_here),
        ("evercron_uptime_seconds", "Seconds since the daemon started", uptime),
        (
            "evercron_firing_lag_seconds",
            "How late the latest scheduled firing started, in seconds",
            taken.last_lag,
        ),
        (
            "evercron_firings_late",
            f"Scheduled firings that started more than {taken.late_threshold:g}s late "
            "(this process)",
            taken.late_total,
        ),
    ]
    lines = []
    for name, help_text, value in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {float(value)!r}"]
    lines += [
        "# HELP evercron_recent_runs Runs among the last 1000 by status",
        "# TYPE evercron_recent_runs gauge",
    ]
    lines += [
        f'evercron_recent_runs{{status="{status}"}} {float(taken.recent.get(status, 0))!r}'
        for status in RunStatus
    ]
    return "\n".join(lines) + "\n"
