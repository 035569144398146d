"""Late and missed firings: counted, and warned about at once, then at most once per
interval (a clock the test moves by hand stands in for time passing)."""

from __future__ import annotations

import logging

import pytest

from evercron.scheduler.lag import LagMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    found = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    caplog.clear()
    return found


def test_late_and_missed_firings_are_counted_and_warned_about_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "evercron.scheduler")
    clock = Clock()
    monitor = LagMonitor(threshold=1.0, interval=10.0, clock=clock)
    monitor.started("tick", 0.004)
    assert monitor.last_lag == 0.004 and monitor.late_total == 0 and warnings(caplog) == []

    monitor.started("tick", 2.5)
    assert warnings(caplog) == [
        "falling behind: a firing of tick started 2.5s late; the machine or the daemon is "
        "overloaded"
    ]
    for lag in (1.5, 3.0, 0.2):
        clock.now += 1
        monitor.started("tock", lag)
    clock.now += 1
    monitor.missed("tock", 61.0)
    assert warnings(caplog) == []  # within the interval: counted, not logged

    clock.now += 7
    monitor.started("tick", 4.0)
    assert warnings(caplog) == [
        "falling behind: in the last 11s 3 firings started more than 1s late and 1 were "
        "missed (up to 61.0s late); the machine or the daemon is overloaded"
    ]
    assert (monitor.late_total, monitor.missed_total, monitor.last_lag) == (4, 1, 4.0)

    clock.now += 60  # quiet for a while: the next late start is told at once, alone
    monitor.missed("tick", 75.0)
    assert warnings(caplog) == [
        "falling behind: a firing of tick was missed (75.0s late); the machine or the "
        "daemon is overloaded"
    ]
