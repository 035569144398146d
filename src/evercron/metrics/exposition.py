"""`/metrics` per job, in the Prometheus text format.

Every series is labelled `job_name` (never `job`, which Prometheus sets itself on each
target, and never the command: secrets, cardinality). The per-job gauges and the
`succeeded`/`failed` run counters of scheduled runs exist from start-up for every job, so
`absent()` and `rate()` work before a first run; other label combinations (and the
histograms) appear on first use.

Totals arrive as series keys (`runs_total|backup|failed|schedule`, see
`evercron.metrics.counts`). A thousand jobs make some 30,000 lines, so the text is
written by hand, a job's lines once per change of its values (`job_fragments`, which the
scrape caches), and `render` only puts the pieces in order.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import statistics
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from evercron.cron import CronSyntaxError, parse
from evercron.metrics.counts import (
    DELAY,
    DELAY_BUCKETS,
    DURATION,
    DURATION_BUCKETS,
    LAST_FAILURE,
    LAST_SUCCESS,
    MISSED,
    NOTIFICATIONS,
    RUNS,
    job_of,
)
from evercron.store import JobSchedule

_ALWAYS = (("succeeded", "schedule"), ("failed", "schedule"))
_EDGES = {
    DURATION: [*(repr(bound) for bound in DURATION_BUCKETS), "+Inf"],
    DELAY: [*(repr(bound) for bound in DELAY_BUCKETS), "+Inf"],
}
_HEADS = (
    ("evercron_runs_total", "counter", "Runs ended, by status and trigger"),
    ("evercron_run_duration_seconds", "histogram", "Run durations, in seconds"),
    (
        "evercron_run_start_delay_seconds",
        "histogram",
        "How late scheduled runs started, in seconds",
    ),
    (
        "evercron_job_last_success_timestamp_seconds",
        "gauge",
        "When a run last succeeded (0: never)",
    ),
    ("evercron_job_last_failure_timestamp_seconds", "gauge", "When a run last failed (0: never)"),
    (
        "evercron_firings_missed_total",
        "counter",
        "Firings not run: they could only have started after misfire_grace",
    ),
)  # the families of `job_fragments`, in its order


def job_fragments(name: str, values: Mapping[str, float]) -> tuple[str, ...]:
    """One job's lines of each family of `_HEADS` (an empty string for a histogram it has
    no observation of), from its series keys and totals."""
    runs: dict[tuple[str, str], float] = {}
    buckets: dict[str, dict[int, float]] = {DURATION: {}, DELAY: {}}
    sums = {DURATION: 0.0, DELAY: 0.0}
    single = {MISSED: 0.0, LAST_SUCCESS: 0.0, LAST_FAILURE: 0.0}
    for key, value in values.items():
        parts = key.split("|")
        family = parts[0]
        if family == RUNS and len(parts) == 4:
            runs[(parts[2], parts[3])] = value
        elif family in buckets and len(parts) == 3 and parts[2].isdigit():
            buckets[family][int(parts[2])] = value
        elif family.endswith("_sum") and family[:-4] in sums:
            sums[family[:-4]] = value
        elif family in single:
            single[family] = value
    label = f'job_name="{name}"'
    counted = "\n".join(
        f'evercron_runs_total{{{label},status="{status}",trigger="{trigger}"}} '
        f"{float(runs.get((status, trigger), 0))!r}"
        for status, trigger in sorted({*_ALWAYS, *runs})
    )
    return (
        counted,
        _histogram(DURATION, label, buckets[DURATION], sums[DURATION]),
        _histogram(DELAY, label, buckets[DELAY], sums[DELAY]),
        f"evercron_job_last_success_timestamp_seconds{{{label}}} {single[LAST_SUCCESS]!r}",
        f"evercron_job_last_failure_timestamp_seconds{{{label}}} {single[LAST_FAILURE]!r}",
        f"evercron_firings_missed_total{{{label}}} {single[MISSED]!r}",
    )


def render(
    jobs: Sequence[JobSchedule],
    fragments: Mapping[str, Sequence[str]],
    next_fires: Mapping[str, dt.datetime],
    running: Counter[str],
    channel_totals: Mapping[str, float],
) -> str:
    """The per-job metrics (each job's `job_fragments` given) and the notification
    counters (their series keys and totals), as exposition text."""
    out: list[str] = []
    for position, head in enumerate(_HEADS):
        _family(out, *head)
        out.extend(piece for job in jobs if (piece := fragments[job.name][position]))
    _family(
        out,
        "evercron_job_next_run_timestamp_seconds",
        "gauge",
        "When the job fires next (NaN: paused, disabled or no next firing)",
    )
    for job in jobs:
        fire = next_fires.get(job.name)
        value = repr(fire.timestamp()) if fire is not None else "NaN"
        out.append(f'evercron_job_next_run_timestamp_seconds{{job_name="{job.name}"}} {value}')
    _family(out, "evercron_job_running", "gauge", "Runs of the job running now")
    out.extend(
        f'evercron_job_running{{job_name="{j.name}"}} {running.get(j.name, 0)}' for j in jobs
    )
    _family(
        out,
        "evercron_job_interval_seconds",
        "gauge",
        "The typical time between firings (NaN for @reboot)",
    )
    for job in jobs:
        interval = interval_seconds(job.schedule, job.timezone)
        value = "NaN" if math.isnan(interval) else repr(interval)
        out.append(f'evercron_job_interval_seconds{{job_name="{job.name}"}} {value}')
    _family(
        out,
        "evercron_notifications_total",
        "counter",
        "Notification delivery attempts by outcome: sent, failed (retried), given_up, "
        "suppressed (over max_per_hour)",
    )
    for key, count in sorted(channel_totals.items()):
        parts = key.split("|")
        if parts[0] == NOTIFICATIONS and len(parts) == 3:
            labels = f'channel="{parts[1]}",outcome="{parts[2]}"'
            out.append(f"evercron_notifications_total{{{labels}}} {float(count)!r}")
    return "\n".join(out) + "\n"


def render_totals(
    jobs: Sequence[JobSchedule],
    totals: Mapping[str, float],
    next_fires: Mapping[str, dt.datetime],
    running: Counter[str],
) -> str:
    """`render` straight from totals of every series (no cache)."""
    by_job = split_by_job(totals.items())
    fragments = {job.name: job_fragments(job.name, by_job.get(job.name, {})) for job in jobs}
    return render(jobs, fragments, next_fires, running, by_job.get("", {}))


def split_by_job(entries: Iterable[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """Series keys and totals grouped by job name ("": the notification series)."""
    grouped: dict[str, dict[str, float]] = {}
    for key, value in entries:
        grouped.setdefault(job_of(key), {})[key] = value
    return grouped


def _histogram(name: str, label: str, counts: Mapping[int, float], total: float) -> str:
    if not counts:
        return ""  # (appears on first use)
    metric = f"evercron_{name}"
    cumulative = itertools.accumulate(counts.get(i, 0.0) for i in range(len(_EDGES[name])))
    lines = [
        f'{metric}_bucket{{{label},le="{edge}"}} {float(count)!r}'
        for edge, count in zip(_EDGES[name], cumulative, strict=True)
    ]
    observed = float(sum(counts.values()))
    lines.append(f"{metric}_sum{{{label}}} {float(total)!r}")
    lines.append(f"{metric}_count{{{label}}} {observed!r}")
    return "\n".join(lines)


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}.")
    out.append(f"# TYPE {name} {kind}")


@functools.lru_cache(maxsize=8192)
def interval_seconds(schedule: str, timezone: str | None) -> float:
    """The typical time between firings of a schedule: the median of the gaps between its
    next few fire times (weekdays at 9: a day). NaN when it has none (@reboot)."""
    try:
        expression = parse(schedule)
    except CronSyntaxError:
        return math.nan
    if expression.is_reboot:
        return math.nan
    try:
        zone = zoneinfo.ZoneInfo(timezone) if timezone else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # a stored row that no longer reads
        return math.nan
    now = dt.datetime.now(zone) if zone else dt.datetime.now().astimezone()
    times = [moment.timestamp() for moment in expression.next_n(now, 6)]  # instants, not walls
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return statistics.median(gaps) if gaps else math.nan
