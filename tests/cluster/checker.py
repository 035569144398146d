"""The several-node checker (after Jepsen's Chronos checker).

Jobs append to a ledger file that evercron never reads; afterwards the checker compares it
with the runs in the database:
- every expected firing of every every-second job is in the ledger exactly once, or is
  an explicit `skipped` or `lost` row - never twice, never silently absent;
- the runs of a `forbid` job never overlap (from the ledger's start and end lines, with
  the run's recorded end where its command was killed before it could write its end);
- no result arrived with a stale fence: a run marked `lost` stays lost, and every run
  the ledger names carries the fence its command saw.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

TICK_LINE = 'echo "tick $EVERCRON_JOB $EVERCRON_SCHEDULED_AT $EVERCRON_NODE $EVERCRON_FENCE" >> {}'
SOLO_LINE = (
    'echo "start $EVERCRON_RUN_ID $(date +%s.%N)" >> {ledger}; sleep {seconds}; '
    'echo "end $EVERCRON_RUN_ID $(date +%s.%N)" >> {ledger}'
)


@dataclass
class Findings:
    """What the checker found wrong (empty lists: nothing)."""

    doubled: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def assert_clean(self) -> None:
        problems = {
            "doubled": self.doubled,
            "missing": self.missing,
            "overlapping": self.overlaps,
            "stale": self.stale,
        }
        bad = {name: items[:10] for name, items in problems.items() if items}
        assert not bad, f"checker: {bad} ({self.counts})"


def runs_of(url: str) -> list[dict[str, Any]]:
    """Every run row, as dicts."""
    with psycopg.connect(url) as db:
        cursor = db.execute(
            "SELECT id, job, trigger, scheduled_at, attempt, status, node, fence, started_at, "
            "finished_at, error FROM runs ORDER BY id"
        )
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def events_of(url: str, kind: str) -> list[str]:
    """The details of the daemon events of one kind."""
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT detail FROM events WHERE kind = %s ORDER BY id", (kind,))
        return [row[0] for row in rows.fetchall()]


def check(
    url: str,
    ledger: Path,
    ticking: list[str],
    solo: str | None,
    since: dt.datetime,
    until: dt.datetime,
) -> Findings:
    """Check the ledger against the database for the firings due in [since, until)."""
    findings = Findings()
    runs = runs_of(url)
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    ticks: collections.Counter[tuple[str, dt.datetime]] = collections.Counter()
    fences: dict[tuple[str, dt.datetime], set[tuple[str, int]]] = collections.defaultdict(set)
    for line in lines:
        parts = line.split()
        if parts and parts[0] == "tick" and len(parts) == 5:
            at = dt.datetime.fromisoformat(parts[2])
            ticks[(parts[1], at)] += 1
            fences[(parts[1], at)].add((parts[3], int(parts[4])))
    explicit = {
        (run["job"], run["scheduled_at"])
        for run in runs
        if run["status"] in ("skipped", "lost") and run["trigger"] in ("schedule", "catch-up")
    }
    expected = 0
    for job in ticking:
        moment = since.replace(microsecond=0) + dt.timedelta(seconds=1)
        while moment < until:
            expected += 1
            seen = ticks[(job, moment)]
            if seen > 1:
                findings.doubled.append(f"{job} {moment:%H:%M:%S} ran {seen} times")
            elif seen == 0 and (job, moment) not in explicit:
                findings.missing.append(f"{job} {moment:%H:%M:%S}")
            moment += dt.timedelta(seconds=1)
    _check_fences(runs, fences, findings)
    if solo is not None:
        _check_overlaps(runs, lines, solo, findings)
    findings.counts = {
        "expected": expected,
        "ledger": sum(ticks.values()),
        "lost": sum(1 for run in runs if run["status"] == "lost"),
        "skipped": sum(1 for run in runs if run["status"] == "skipped"),
    }
    return findings


def _check_fences(
    runs: list[dict[str, Any]],
    fences: dict[tuple[str, dt.datetime], set[tuple[str, int]]],
    findings: Findings,
) -> None:
    """Each ledger line's (node, fence) is the run that owned the firing."""
    owners = {
        (run["job"], run["scheduled_at"]): (run["node"], run["fence"])
        for run in runs
        if run["trigger"] in ("schedule", "catch-up")
    }
    for key, seen in fences.items():
        owner = owners.get(key)
        if owner is None or seen != {owner}:
            findings.stale.append(f"{key[0]} {key[1]:%H:%M:%S}: ran as {seen}, owned by {owner}")


def _check_overlaps(
    runs: list[dict[str, Any]], lines: list[str], solo: str, findings: Findings
) -> None:
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("start", "end"):
            (starts if parts[0] == "start" else ends)[int(parts[1])] = float(parts[2])
    finished = {run["id"]: run["finished_at"] for run in runs if run["job"] == solo}
    intervals = []
    for run_id, began in starts.items():
        end = ends.get(run_id)
        if end is None:
            recorded = finished.get(run_id)
            end = recorded.timestamp() if recorded is not None else float("inf")
        intervals.append((began, end, run_id))
    intervals.sort()
    for (_, end, first), (began, _, second) in itertools.pairwise(intervals):
        if began < end:
            findings.overlaps.append(f"runs {first} and {second} of {solo} overlap")
