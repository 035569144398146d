"""Daylight-saving behaviour, one class per zone (Debian/vixie cron rules).

Fixed-time jobs (hour and minute do not start with `*`) whose wall time is skipped run at
the first instant after the gap, and run once, at the first occurrence, in an overlap.
Jobs whose hour or minute starts with `*` follow real elapsed time.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from evercron.cron import parse


def fire_times(expr: str, zone: str, after: str, count: int) -> list[str]:
    """The next `count` fire times as ISO strings with their UTC offsets."""
    start = dt.datetime.fromisoformat(after).replace(tzinfo=ZoneInfo(zone))
    return [t.isoformat() for t in parse(expr).next_n(start, count)]


def prev_times(expr: str, zone: str, before: str, count: int) -> list[str]:
    """The `count` fire times before `before` (ISO with offset), newest first."""
    schedule = parse(expr)
    moment: dt.datetime | None = at(before, zone)
    times = []
    for _ in range(count):
        assert moment is not None
        moment = schedule.prev(moment)
        assert moment is not None
        times.append(moment.isoformat())
    return times


def at(text: str, zone: str) -> dt.datetime:
    """An aware time from an ISO string with offset, expressed in `zone` (fold correct)."""
    return dt.datetime.fromisoformat(text).astimezone(ZoneInfo(zone))


class TestEuropeBerlin:
    """2024-03-31 02:00 CET -> 03:00 CEST; 2024-10-27 03:00 CEST -> 02:00 CET."""

    zone = "Europe/Berlin"

    def test_fixed_job_in_the_gap_runs_right_after_it(self) -> None:
        assert fire_times("30 2 * * *", self.zone, "2024-03-30 12:00", 2) == [
            "2024-03-31T03:00:00+02:00",
            "2024-04-01T02:30:00+02:00",
        ]

    def test_several_fixed_times_in_one_gap_run_once(self) -> None:
        assert fire_times("0,30 2 * * *", self.zone, "2024-03-30 12:00", 2) == [
            "2024-03-31T03:00:00+02:00",
            "2024-04-01T02:00:00+02:00",
        ]

    def test_fixed_job_in_the_overlap_runs_once_at_the_first_occurrence(self) -> None:
        assert fire_times("30 2 * * *", self.zone, "2024-10-26 12:00", 2) == [
            "2024-10-27T02:30:00+02:00",
            "2024-10-28T02:30:00+01:00",
        ]

    def test_elapsed_job_skips_the_gap(self) -> None:
        assert fire_times("30 * * * *", self.zone, "2024-03-31 00:00", 3) == [
            "2024-03-31T00:30:00+01:00",
            "2024-03-31T01:30:00+01:00",
            "2024-03-31T03:30:00+02:00",
        ]

    def test_elapsed_job_runs_twice_in_the_overlap(self) -> None:
        assert fire_times("30 * * * *", self.zone, "2024-10-27 01:00", 4) == [
            "2024-10-27T01:30:00+02:00",
            "2024-10-27T02:30:00+02:00",
            "2024-10-27T02:30:00+01:00",
            "2024-10-27T03:30:00+01:00",
        ]

    def test_star_minute_with_fixed_hour_follows_elapsed_time(self) -> None:
        assert fire_times("*/20 2 * * *", self.zone, "2024-10-27 00:00", 7) == [
            "2024-10-27T02:00:00+02:00",
            "2024-10-27T02:20:00+02:00",
            "2024-10-27T02:40:00+02:00",
            "2024-10-27T02:00:00+01:00",
            "2024-10-27T02:20:00+01:00",
            "2024-10-27T02:40:00+01:00",
            "2024-10-28T02:00:00+01:00",
        ]
        assert fire_times("*/20 2 * * *", self.zone, "2024-03-30 12:00", 1) == [
            "2024-04-01T02:00:00+02:00"
        ]

    def test_next_from_inside_the_overlap(self) -> None:
        first_pass = at("2024-10-27T02:45:00+02:00", self.zone)
        second_pass = at("2024-10-27T02:15:00+01:00", self.zone)
        every_quarter = parse("*/15 * * * *")
        assert every_quarter.next(first_pass) == at("2024-10-27T02:00:00+01:00", self.zone)
        assert every_quarter.next(second_pass) == at("2024-10-27T02:30:00+01:00", self.zone)
        assert parse("30 2 * * *").next(second_pass) == at("2024-10-28T02:30:00+01:00", self.zone)

    def test_prev_mirrors_next(self) -> None:
        assert prev_times("30 * * * *", self.zone, "2024-10-27T04:00:00+01:00", 4) == [
            "2024-10-27T03:30:00+01:00",
            "2024-10-27T02:30:00+01:00",
            "2024-10-27T02:30:00+02:00",
            "2024-10-27T01:30:00+02:00",
        ]
        second_pass = at("2024-10-27T02:15:00+01:00", self.zone)
        assert parse("30 2 * * *").prev(second_pass) == at("2024-10-27T02:30:00+02:00", self.zone)
        assert prev_times("30 2 * * *", self.zone, "2024-04-01T00:00:00+02:00", 1) == [
            "2024-03-31T03:00:00+02:00"
        ]

    def test_matches_follows_the_same_rules(self) -> None:
        fixed, elapsed = parse("30 2 * * *"), parse("30 * * * *")
        assert fixed.matches(at("2024-03-31T03:00:00+02:00", self.zone))
        assert fixed.matches(at("2024-10-27T02:30:00+02:00", self.zone))
        assert not fixed.matches(at("2024-10-27T02:30:00+01:00", self.zone))
        assert elapsed.matches(at("2024-10-27T02:30:00+01:00", self.zone))
        assert not elapsed.matches(at("2024-03-31T03:00:00+02:00", self.zone))

    def test_results_carry_the_input_zone(self) -> None:
        zone = ZoneInfo(self.zone)
        found = parse("@daily").next(dt.datetime(2024, 6, 1, tzinfo=zone))
        assert found is not None and found.tzinfo is zone


class TestAmericaNewYork:
    """2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST."""

    zone = "America/New_York"

    def test_spring_forward(self) -> None:
        assert fire_times("30 2 * * *", self.zone, "2024-03-09 12:00", 2) == [
            "2024-03-10T03:00:00-04:00",
            "2024-03-11T02:30:00-04:00",
        ]
        assert fire_times("0 * * * *", self.zone, "2024-03-10 00:30", 3) == [
            "2024-03-10T01:00:00-05:00",
            "2024-03-10T03:00:00-04:00",
            "2024-03-10T04:00:00-04:00",
        ]

    def test_fall_back(self) -> None:
        assert fire_times("30 1 * * *", self.zone, "2024-11-02 12:00", 2) == [
            "2024-11-03T01:30:00-04:00",
            "2024-11-04T01:30:00-05:00",
        ]
        assert fire_times("0 * * * *", self.zone, "2024-11-02 23:30", 4) == [
            "2024-11-03T00:00:00-04:00",
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T02:00:00-05:00",
        ]

    def test_every_second_counts_real_seconds_across_fall_back(self) -> None:
        start = at("2024-11-03T00:59:59-04:00", self.zone)
        times = parse("* * * * * * *").next_n(start, 7202)
        stamps = [int(t.timestamp()) for t in times]
        assert stamps == list(range(int(start.timestamp()) + 1, int(start.timestamp()) + 7203))


class TestAustraliaLordHowe:
    """A 30-minute shift: 2024-04-07 02:00 -> 01:30 (+11 -> +10:30); 2024-10-06 02:00 -> 02:30."""

    zone = "Australia/Lord_Howe"

    def test_gap_of_thirty_minutes(self) -> None:
        assert fire_times("15 2 * * *", self.zone, "2024-10-05 12:00", 2) == [
            "2024-10-06T02:30:00+11:00",
            "2024-10-07T02:15:00+11:00",
        ]
        assert fire_times("*/15 * * * *", self.zone, "2024-10-06 01:40", 2) == [
            "2024-10-06T01:45:00+10:30",
            "2024-10-06T02:30:00+11:00",
        ]

    def test_overlap_of_thirty_minutes(self) -> None:
        assert fire_times("45 1 * * *", self.zone, "2024-04-06 12:00", 2) == [
            "2024-04-07T01:45:00+11:00",
            "2024-04-08T01:45:00+10:30",
        ]
        assert fire_times("*/15 * * * *", self.zone, "2024-04-07 01:20", 5) == [
            "2024-04-07T01:30:00+11:00",
            "2024-04-07T01:45:00+11:00",
            "2024-04-07T01:30:00+10:30",
            "2024-04-07T01:45:00+10:30",
            "2024-04-07T02:00:00+10:30",
        ]


class TestAmericaSantiago:
    """Shifts at midnight: 2024-04-07 00:00 -> 2024-04-06 23:00; 2024-09-08 00:00 -> 01:00."""

    zone = "America/Santiago"

    def test_midnight_job_on_the_day_midnight_is_skipped(self) -> None:
        assert fire_times("0 0 * * *", self.zone, "2024-09-07 12:00", 2) == [
            "2024-09-08T01:00:00-03:00",
            "2024-09-09T00:00:00-03:00",
        ]

    def test_hourly_across_the_midnight_gap(self) -> None:
        assert fire_times("0 * * * *", self.zone, "2024-09-07 22:30", 3) == [
            "2024-09-07T23:00:00-04:00",
            "2024-09-08T01:00:00-03:00",
            "2024-09-08T02:00:00-03:00",
        ]

    def test_evening_repeated_once_for_fixed_and_twice_for_elapsed(self) -> None:
        assert fire_times("30 23 * * *", self.zone, "2024-04-06 12:00", 2) == [
            "2024-04-06T23:30:00-03:00",
            "2024-04-07T23:30:00-04:00",
        ]
        assert fire_times("0 * * * *", self.zone, "2024-04-06 21:30", 4) == [
            "2024-04-06T22:00:00-03:00",
            "2024-04-06T23:00:00-03:00",
            "2024-04-06T23:00:00-04:00",
            "2024-04-07T00:00:00-04:00",
        ]

    def test_weekly_job_whose_day_starts_late(self) -> None:
        # 2024-09-08 is a Sunday whose first hour does not exist.
        assert fire_times("0 0 * * SUN", self.zone, "2024-09-01 12:00", 1) == [
            "2024-09-08T01:00:00-03:00"
        ]


class TestFixedOffsetsAndUtc:
    def test_fixed_offset_zone_is_plain_wall_time(self) -> None:
        tz = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
        found = parse("0 9 * * *").next(dt.datetime(2024, 1, 1, 10, tzinfo=tz))
        assert found == dt.datetime(2024, 1, 2, 9, tzinfo=tz)

    def test_instants_compare_by_timestamp_not_wall_clock(self) -> None:
        zone = ZoneInfo("Europe/Berlin")
        early = dt.datetime(2024, 10, 27, 2, 30, tzinfo=zone)
        late = early.replace(fold=1)
        assert parse("30 * * * *").next(early) == late  # same wall time, an hour later
        assert late.timestamp() - early.timestamp() == 3600
