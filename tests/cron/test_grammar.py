"""The expression grammar: what parses to what, and the one-line errors for what does not."""

from __future__ import annotations

import datetime as dt
import pickle
import threading

import pytest

from evercron.cron import CronExpr, CronSyntaxError, parse


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


FEATURE_CASES = [
    # (expression, after, the next fire times)
    (
        "0 22-2 * * *",
        "2024-01-01 03:00",
        [
            "2024-01-01 22:00",
            "2024-01-01 23:00",
            "2024-01-02 00:00",
            "2024-01-02 01:00",
            "2024-01-02 02:00",
            "2024-01-02 22:00",
        ],
    ),
    (
        "0 22-2/2 * * *",
        "2024-01-01 03:00",
        ["2024-01-01 22:00", "2024-01-02 00:00", "2024-01-02 02:00", "2024-01-02 22:00"],
    ),
    (
        "0 0 * * FRI-MON",
        "2024-01-03 00:00",
        [
            "2024-01-05 00:00",
            "2024-01-06 00:00",
            "2024-01-07 00:00",
            "2024-01-08 00:00",
            "2024-01-12 00:00",
        ],
    ),
    ("0 0 * * Friday", "2024-01-01 00:00", ["2024-01-05 00:00"]),
    ("0 0 1 JANUARY,jul *", "2024-01-01 00:00", ["2024-07-01 00:00", "2025-01-01 00:00"]),
    (
        "0 0 1 nov-feb *",
        "2024-03-01 00:00",
        [
            "2024-11-01 00:00",
            "2024-12-01 00:00",
            "2025-01-01 00:00",
            "2025-02-01 00:00",
            "2025-11-01 00:00",
        ],
    ),
    ("0 0 * * 7", "2024-01-01 00:00", ["2024-01-07 00:00"]),
    (
        "0 0 * * 5-7",
        "2024-01-01 00:00",
        ["2024-01-05 00:00", "2024-01-06 00:00", "2024-01-07 00:00", "2024-01-12 00:00"],
    ),
    (
        "10/20 * * * *",
        "2024-01-01 00:00",
        ["2024-01-01 00:10", "2024-01-01 00:30", "2024-01-01 00:50", "2024-01-01 01:10"],
    ),
    ("*/60 * * * *", "2024-01-01 00:00", ["2024-01-01 01:00"]),
    (
        "0 0 L-2 * *",
        "2024-01-01 00:00",
        ["2024-01-29 00:00", "2024-02-27 00:00", "2024-03-29 00:00"],
    ),
    (
        "0 0 1,L * *",
        "2024-01-02 00:00",
        ["2024-01-31 00:00", "2024-02-01 00:00", "2024-02-29 00:00"],
    ),
    ("0 0 1W * *", "2024-06-01 00:00", ["2024-06-03 00:00", "2024-07-01 00:00"]),
    ("0 0 * * 5L", "2024-01-01 00:00", ["2024-01-26 00:00", "2024-02-23 00:00"]),
    ("0 0 * * friL", "2024-01-01 00:00", ["2024-01-26 00:00"]),
    ("15 10 * * 5#3", "2024-01-01 00:00", ["2024-01-19 10:15", "2024-02-16 10:15"]),
    (
        "0 0 * * MON#1,FRI#2",
        "2024-01-01 00:00",
        ["2024-01-12 00:00", "2024-02-05 00:00", "2024-02-09 00:00"],
    ),
    # Vixie cron: both day fields restricted -> either may match.
    (
        "0 30 9 1-7 * TUE *",
        "2024-01-01 00:00",
        ["2024-01-01 09:30", "2024-01-02 09:30", "2024-01-03 09:30"],
    ),
    ("30 9 1-7 * TUE", "2024-01-08 00:00", ["2024-01-09 09:30", "2024-01-16 09:30"]),
    # A field starting with * or ? -> both must match.
    ("0 0 */7 * MON", "2024-01-29 00:00", ["2024-04-01 00:00", "2024-04-08 00:00"]),
    ("0 0 ? * MON", "2024-01-01 00:00", ["2024-01-08 00:00"]),
    ("0 0 13 * ?", "2024-01-01 00:00", ["2024-01-13 00:00"]),
    (
        "0 0 13 * 5",
        "2024-09-01 00:00",
        ["2024-09-06 00:00", "2024-09-13 00:00", "2024-09-20 00:00"],
    ),
    # Years.
    ("0 0 1 1 * 2030", "2024-01-01 00:00", ["2030-01-01 00:00"]),
    ("0 0 1 1 * 2030-2031", "2030-01-01 00:00", ["2031-01-01 00:00"]),
    ("0 0 0 1 1 * 2099", "2024-01-01 00:00", ["2099-01-01 00:00"]),
    # Macros.
    ("@yearly", "2024-05-05 00:00", ["2025-01-01 00:00"]),
    ("@annually", "2024-05-05 00:00", ["2025-01-01 00:00"]),
    ("@monthly", "2024-05-05 00:00", ["2024-06-01 00:00"]),
    ("@weekly", "2024-05-05 00:00", ["2024-05-12 00:00"]),
    ("@daily", "2024-05-05 00:00", ["2024-05-06 00:00"]),
    ("@midnight", "2024-05-05 00:00", ["2024-05-06 00:00"]),
    ("@hourly", "2024-05-05 00:00", ["2024-05-05 01:00"]),
    ("@minutely", "2024-05-05 00:00", ["2024-05-05 00:01"]),
    ("@DAILY", "2024-05-05 00:00", ["2024-05-06 00:00"]),
    ("@every 90s", "2024-01-01 00:00", ["2024-01-01 00:01:30", "2024-01-01 00:03:00"]),
    ("@every 1h30m", "2024-01-01 00:00", ["2024-01-01 01:30", "2024-01-01 03:00"]),
    ("@every 7", "1970-01-01 00:00:06", ["1970-01-01 00:00:07", "1970-01-01 00:00:14"]),
]


@pytest.mark.parametrize(("expr", "after", "want"), FEATURE_CASES)
def test_fire_times(expr: str, after: str, want: list[str]) -> None:
    assert parse(expr).next_n(_at(after), len(want)) == [_at(w) for w in want]


ERROR_CASES = [
    ("0 24 * * *", 'hour field "24": 24 is out of range 0-23'),
    ("60 * * * *", 'minute field "60": 60 is out of range 0-59'),
    ("* * 0 * *", 'day-of-month field "0": 0 is out of range 1-31'),
    ("* * * 13 *", 'month field "13": 13 is out of range 1-12'),
    ("* * * * 8", 'day-of-week field "8": 8 is out of range 0-7'),
    ("* * * * * 1969", 'year field "1969": 1969 is out of range 1970-2099'),
    ("* * * * * 2100", 'year field "2100": 2100 is out of range 1970-2099'),
    ("*/0 * * * *", 'minute field "*/0": step 0 is out of range 1-60'),
    ("*/61 * * * *", 'minute field "*/61": step 61 is out of range 1-60'),
    ("* * * foo *", 'month field "foo": "foo" is not a number or a name (jan-dec)'),
    ("* * * * funday", 'day-of-week field "funday": "funday" is not a number or a name'),
    ("1,,2 * * * *", 'minute field "1,,2": empty item in list'),
    ("* * * * 1#6", 'day-of-week field "1#6": #6: occurrence is out of range 1-5'),
    ("* * * * 1#0", "occurrence is out of range 1-5"),
    ("* * L-31 * *", "L-31: offset is out of range 0-30"),
    ("* * 32W * *", "32 is out of range 1-31"),
    ("* * * * L", '"L" alone is not valid here'),
    ("5L * * * *", "L, W and # are only allowed in the day fields"),
    ("? * * * *", "'?' is only allowed in day-of-month and day-of-week"),
    ("* * *", "expected 5, 6 or 7 fields"),
    ("* * * * * * * *", "expected 5, 6 or 7 fields"),
    ("", "expected 5, 6 or 7 fields"),
    ("@often", 'unknown macro "@often"'),
    ("@daily extra", 'unknown macro "@daily extra"'),
    ("@every", '@every "": invalid duration'),
    ("@every 0s", "must be a whole number of seconds >= 1s"),
    ("@every 1.5s", "must be a whole number of seconds >= 1s"),
    ("@every soon", "invalid duration"),
    ("1-x * * * *", '"x" is not a number'),
    ("-5 * * * *", '"" is not a number'),
    ("1/x * * * *", 'step "x" is not a number'),
    ("0 0 30 2 *", "can never fire"),
    ("0 0 31 4,6,9,11 *", "can never fire"),
    ("0 0 30W 2 *", "can never fire"),
    ("0 0 29 2 * 2025", "can never fire"),
    ("0 0 29 2 * 2097-2099", "can never fire"),
    ("0 0 */30 2 MON", None),  # parses: 1 Feb can be a Monday
]


@pytest.mark.parametrize(("expr", "message"), ERROR_CASES)
def test_errors_name_field_text_and_range(expr: str, message: str | None) -> None:
    if message is None:
        parse(expr)
        return
    with pytest.raises(CronSyntaxError) as caught:
        parse(expr)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_non_string_is_a_syntax_error() -> None:
    with pytest.raises(CronSyntaxError, match="expected a string"):
        parse(5)  # type: ignore[arg-type]


class TestValueSemantics:
    def test_str_gives_the_text_back(self) -> None:
        assert str(parse("  */5 * * * MON  ")) == "*/5 * * * MON"
        assert repr(parse("@daily")) == "CronExpr('@daily')"

    def test_equal_and_hashable(self) -> None:
        assert parse("0 9 * * *") == parse("0 9 * * *")
        assert parse("0 9 * * *") != parse("0 10 * * *")
        assert len({parse("0 9 * * *"), parse("0 9 * * *"), parse("@daily")}) == 2

    def test_immutable(self) -> None:
        schedule = parse("0 9 * * *")
        with pytest.raises(AttributeError):
            schedule._text = "x"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            del schedule.warnings

    def test_picklable(self) -> None:
        schedule = parse("0 9 L * *")
        assert pickle.loads(pickle.dumps(schedule)) == schedule

    def test_shared_between_threads(self) -> None:
        schedule = parse("*/7 3-5 L * *")
        start = dt.datetime(2024, 1, 1)
        expected = schedule.next_n(start, 300)
        results: list[list[dt.datetime]] = []

        def work() -> None:
            results.append(parse("*/7 3-5 L * *").next_n(start, 300))
            results.append(schedule.next_n(start, 300))

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [expected] * 16


class TestSpecialSchedules:
    def test_reboot_is_flagged_and_never_fires(self) -> None:
        reboot = parse("@reboot")
        assert reboot.is_reboot
        assert reboot.next(dt.datetime(2024, 1, 1)) is None
        assert reboot.prev(dt.datetime(2024, 1, 1)) is None
        assert not reboot.matches(dt.datetime(2024, 1, 1))
        assert "boot" in reboot.explain()

    def test_every_is_aligned_to_the_epoch_in_any_zone(self) -> None:
        every = parse("@every 90s")
        assert every.every_seconds == 90
        tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
        fire = every.next(dt.datetime(2024, 1, 1, tzinfo=tz))
        assert fire is not None and int(fire.timestamp()) % 90 == 0
        assert fire.tzinfo is tz
        assert every.matches(fire)
        assert every.prev(fire) == fire - dt.timedelta(seconds=90)
        assert every.prev(dt.datetime(2024, 1, 1, 0, 1, 30)) == dt.datetime(2024, 1, 1, 0, 0)

    def test_six_fields_ending_in_star_warn_about_the_year(self) -> None:
        assert "year" in parse("*/5 * * * * *").warnings[0]
        assert parse("*/5 * * * *").warnings == ()
        assert parse("0 0 1 1 * 2030").warnings == ()

    def test_schedule_ends_with_its_last_year(self) -> None:
        schedule = parse("0 0 1 1 * 2098-2099")
        assert schedule.next_n(dt.datetime(2024, 1, 1), 5) == [
            dt.datetime(2098, 1, 1),
            dt.datetime(2099, 1, 1),
        ]
        assert schedule.next(dt.datetime(2099, 1, 1)) is None
        assert schedule.prev(dt.datetime(2098, 1, 1)) is None

    def test_without_year_field_runs_to_datetime_limit(self) -> None:
        leap_days = parse("0 0 29 2 *").next_n(dt.datetime(1970, 1, 1), 5000)
        assert len(leap_days) > 1000
        assert leap_days[-1] == dt.datetime(9996, 2, 29)
        assert parse("* * * * * * *").next(dt.datetime(9999, 12, 31, 23, 59, 59)) is None
        assert parse("* * * * *").prev(dt.datetime(1, 1, 1)) is None
        assert parse("@every 1s").next(dt.datetime(9999, 12, 31, 23, 59, 59)) is None

    def test_explain_is_plain_english(self) -> None:
        assert parse("0 9 * * MON-FRI").explain() == "At 09:00, Monday through Friday"
        assert parse("15 10 * * 5#3").explain() == "At 10:15, on the third Friday of the month"
        assert "Every 1 hour 30 minutes" in parse("@every 1h30m").explain()


class TestSecondResolution:
    def test_microseconds_round_to_the_next_second(self) -> None:
        every_second = parse("* * * * * * *")
        assert every_second.next(dt.datetime(2024, 1, 1, 0, 0, 0, 1)) == dt.datetime(
            2024, 1, 1, 0, 0, 1
        )
        assert every_second.prev(dt.datetime(2024, 1, 1, 0, 0, 1, 5)) == dt.datetime(
            2024, 1, 1, 0, 0, 1
        )
        assert not every_second.matches(dt.datetime(2024, 1, 1, 0, 0, 1, 5))

    def test_matches_naive(self) -> None:
        schedule = parse("30 9 * * MON")
        assert schedule.matches(dt.datetime(2024, 1, 1, 9, 30))
        assert not schedule.matches(dt.datetime(2024, 1, 1, 9, 30, 1))
        assert not schedule.matches(dt.datetime(2024, 1, 2, 9, 30))

    def test_next_is_strictly_after(self) -> None:
        schedule = parse("30 9 * * *")
        assert schedule.next(dt.datetime(2024, 1, 1, 9, 30)) == dt.datetime(2024, 1, 2, 9, 30)
        assert schedule.prev(dt.datetime(2024, 1, 2, 9, 30)) == dt.datetime(2024, 1, 1, 9, 30)


def test_cronexpr_is_exported() -> None:
    assert isinstance(parse("@daily"), CronExpr)
