"""Property tests: random valid expressions against a brute-force oracle, random text."""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import functools
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from evercron.cron import CronSyntaxError, parse
from evercron.cron.fields import Field, FieldSpec

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

MONTH_NAMES = ["jan", "FEB", "Mar", "apr", "may", "jun", "JUL", "aug", "sep", "oct", "nov", "dec"]
DAY_NAMES = ["sun", "MON", "Tue", "wed", "thu", "FRI", "sat"]


@st.composite
def field_item(draw: st.DrawFn, field: Field) -> str:
    """One list item of a field: a value, range, step or star form."""
    low, high = field.low, field.star_high

    def value() -> str:
        number = draw(st.integers(low, field.high))
        if field is Field.MONTH and draw(st.booleans()):
            return MONTH_NAMES[number - 1]
        if field is Field.DAY_OF_WEEK and number < 7 and draw(st.booleans()):
            return DAY_NAMES[number]
        return str(number)

    step = draw(st.integers(1, high - low + 1))
    kind = draw(st.sampled_from(["value", "range", "range-step", "star-step", "from-step"]))
    if kind == "value":
        return value()
    if kind == "range":
        return f"{value()}-{value()}"
    if kind == "range-step":
        return f"{value()}-{value()}/{step}"
    if kind == "star-step":
        return f"*/{step}"
    return f"{value()}/{step}"


@st.composite
def field_text(draw: st.DrawFn, field: Field) -> str:
    """A whole field: `*`, or a list of one to three items (with day specials sometimes)."""
    if draw(st.integers(0, 3)) == 0:
        return "*"
    items = draw(st.lists(field_item(field), min_size=1, max_size=3))
    if field is Field.DAY_OF_MONTH and draw(st.integers(0, 3)) == 0:
        items.append(
            draw(
                st.sampled_from(
                    ["L", "LW", f"L-{draw(st.integers(0, 30))}", f"{draw(st.integers(1, 31))}W"]
                )
            )
        )
    if field is Field.DAY_OF_WEEK and draw(st.integers(0, 3)) == 0:
        day = draw(st.integers(0, 7))
        items.append(draw(st.sampled_from([f"{day}L", f"{day}#{draw(st.integers(1, 5))}"])))
    return ",".join(items)


@st.composite
def expressions(draw: st.DrawFn, seconds: bool = False) -> str:
    """A random valid 5-field (or 7-field when `seconds`) expression."""
    fields = [Field.MINUTE, Field.HOUR, Field.DAY_OF_MONTH, Field.MONTH, Field.DAY_OF_WEEK]
    parts = [draw(field_text(f)) for f in fields]
    if seconds:
        parts = [draw(field_text(Field.SECOND)), *parts, "*"]
    text = " ".join(parts)
    try:
        parse(text)
    except CronSyntaxError:
        assume(False)  # can never fire: rejected by design
    return text


# -- an independent oracle for naive wall times -----------------------------------------


@functools.lru_cache(maxsize=64)
def _specs(text: str) -> list[FieldSpec]:
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts, "*"]
    return [field.parse(part) for field, part in zip(Field, parts, strict=True)]


def _weekday(day: dt.date) -> int:
    return (day.weekday() + 1) % 7  # cron numbering


def _nearest_weekday(year: int, month: int, day: int) -> int:
    last = calendar.monthrange(year, month)[1]
    weekday = _weekday(dt.date(year, month, day))
    if weekday == 6:
        return day - 1 if day > 1 else day + 2
    if weekday == 0:
        return day + 1 if day < last else day - 2
    return day


def oracle_matches(text: str, moment: dt.datetime) -> bool:
    """Whether a naive wall time matches, computed the slow and obvious way."""
    second, minute, hour, dom, month, dow, year = _specs(text)
    if not (
        moment.second in second.values
        and moment.minute in minute.values
        and moment.hour in hour.values
        and moment.month in month.values
        and (year.star or moment.year in year.values)
    ):
        return False
    y, m, d = moment.year, moment.month, moment.day
    last = calendar.monthrange(y, m)[1]
    specials = dom.specials
    last_weekday = next(x for x in range(last, 0, -1) if _weekday(dt.date(y, m, x)) not in (0, 6))
    dom_ok = (
        d in dom.values
        or any(d == last - n for n in specials.last_minus)
        or any(n <= last and _nearest_weekday(y, m, n) == d for n in specials.nearest_weekday)
        or (specials.last_weekday and d == last_weekday)
    )
    weekday = _weekday(moment.date())
    dow_ok = (
        weekday in dow.values
        or (weekday in dow.specials.last_of_weekday and d + 7 > last)
        or (weekday, (d - 1) // 7 + 1) in dow.specials.nth_weekday
    )
    return dom_ok and dow_ok if dom.star or dow.star else dom_ok or dow_ok


naive_times = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2090, 1, 1))


@PROPERTY_SETTINGS
@given(expressions(), naive_times)
def test_next_is_the_first_match_after(text: str, start: dt.datetime) -> None:
    schedule = parse(text)
    found = schedule.next(start)
    assert found is not None
    assert found > start
    assert found.second == 0 and found.microsecond == 0
    assert oracle_matches(text, found)
    assert schedule.matches(found)
    # Brute force: no minute strictly between start and found matches (two-day window).
    probe = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    window_end = min(found, probe + dt.timedelta(days=2))
    while probe < window_end:
        assert not oracle_matches(text, probe), probe
        probe += dt.timedelta(minutes=1)


@PROPERTY_SETTINGS
@given(expressions(seconds=True), naive_times)
def test_seconds_field_brute_force(text: str, start: dt.datetime) -> None:
    schedule = parse(text)
    found = schedule.next(start)
    assert found is not None and found > start
    assert oracle_matches(text, found)
    probe = start.replace(microsecond=0) + dt.timedelta(seconds=1)
    window_end = min(found, probe + dt.timedelta(hours=2))
    while probe < window_end:
        assert not oracle_matches(text, probe), probe
        probe += dt.timedelta(seconds=1)


@PROPERTY_SETTINGS
@given(expressions(), naive_times)
def test_prev_and_next_are_inverse(text: str, start: dt.datetime) -> None:
    schedule = parse(text)
    found = schedule.next(start)
    assert found is not None
    before = schedule.prev(found)
    assert before is not None and before <= start
    assert schedule.next(before) == found
    assert oracle_matches(text, before)


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC"]


@PROPERTY_SETTINGS
@given(
    expressions(),
    st.sampled_from(ZONES),
    st.integers(int(dt.datetime(1990, 1, 1).timestamp()), int(dt.datetime(2060, 1, 1).timestamp())),
)
def test_aware_results_are_consistent(text: str, zone: str, stamp: int) -> None:
    schedule = parse(text)
    start = dt.datetime.fromtimestamp(stamp, ZoneInfo(zone))
    found = schedule.next(start)
    assert found is not None
    assert found.timestamp() > start.timestamp()
    assert schedule.matches(found)
    before = schedule.prev(found)
    assert before is not None and before.timestamp() <= start.timestamp()
    assert schedule.next(before) == found and schedule.next(before).fold == found.fold  # type: ignore[union-attr]
    # A fire time's wall clock matches the fields, except a fixed job moved out of a gap.
    just_before = dt.datetime.fromtimestamp(found.timestamp() - 1, found.tzinfo)
    moved_out_of_gap = just_before.utcoffset() != found.utcoffset()
    assert oracle_matches(text, found.replace(tzinfo=None)) or moved_out_of_gap


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="0123456789*?,-/#LWlw @ \tabcdefghijklmnopqrstuvwxyzMONFRI", max_size=40))
def test_only_syntax_errors_escape_parse_cron_alphabet(text: str) -> None:
    try:
        schedule = parse(text)
    except CronSyntaxError as error:
        assert str(error) and "\n" not in str(error)
        return
    schedule.next(dt.datetime(2024, 1, 1))
    schedule.prev(dt.datetime(2024, 1, 1))
    schedule.explain()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_only_syntax_errors_escape_parse_any_text(text: str) -> None:
    with contextlib.suppress(CronSyntaxError):
        parse(text)
