"""Rows of the PostgreSQL store as the store's records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from evercron.model import Run, RunStatus, Trigger

RUN_COLUMNS = (
    "id, job, trigger, scheduled_at, attempt, status, started_at, finished_at, exit_code, "
    "signal, pid, cpu_user, cpu_system, max_rss_kb, output_bytes, output_truncated, error, "
    "retry_of, owner, node, fence"
)


def run_row(row: tuple[Any, ...]) -> Run:
    """A `Run` from a row of `RUN_COLUMNS`."""
    return Run(
        id=row[0],
        job=row[1],
        trigger=Trigger(row[2]),
        scheduled_at=_utc(row[3]),
        attempt=row[4],
        status=RunStatus(row[5]),
        started_at=None if row[6] is None else _utc(row[6]),
        finished_at=None if row[7] is None else _utc(row[7]),
        exit_code=row[8],
        signal=row[9],
        pid=row[10],
        cpu_user=row[11],
        cpu_system=row[12],
        max_rss_kb=row[13],
        output_bytes=row[14],
        output_truncated=row[15],
        error=row[16],
        retry_of=row[17],
        owner=row[18],
        node=row[19],
        fence=row[20],
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)


def storable(text: str | None) -> str | None:
    """`text` as PostgreSQL's text can hold it: a lone surrogate becomes a backslash
    escape, a NUL character the two characters `\\0`."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\0")
