"""Which days of one month a schedule allows.

A month's answer depends only on its shape: how many days it has and the weekday of its
first day, so there are at most 28 distinct answers per expression. Each answer is a pair
of lookup tables indexed by day 0..32: the next allowed day at or after it and the previous
allowed day at or before it (-1 when there is none), which makes stepping O(1).
"""

from __future__ import annotations

from evercron.cron.fields import FieldSpec
from evercron.cron.tables import next_table, prev_table

DayTables = tuple[tuple[int, ...], tuple[int, ...]]
_TABLE_SIZE = 33  # indexes 0..32: day 0 and days past the month's end are never allowed


def allowed_days(
    dom: FieldSpec, dow: FieldSpec, days_in_month: int, first_weekday: int
) -> set[int]:
    """The days (1-based) of a month with this shape that dom and dow allow together.

    `first_weekday` uses cron numbering (0 = Sunday). Vixie cron rule: when either field
    starts with `*` or `?` a day must satisfy both, otherwise either.
    """
    by_dom = _dom_days(dom, days_in_month, first_weekday)
    by_dow = _dow_days(dow, days_in_month, first_weekday)
    return by_dom & by_dow if dom.star or dow.star else by_dom | by_dow


def tables_for(days: set[int]) -> DayTables:
    """Next-at-or-after and previous-at-or-before lookup tables for a set of days."""
    return tuple(next_table(days, _TABLE_SIZE)), tuple(prev_table(days, _TABLE_SIZE))


def _dom_days(dom: FieldSpec, last: int, first_weekday: int) -> set[int]:
    days = {d for d in dom.values if d <= last}
    specials = dom.specials
    days.update(last - n for n in specials.last_minus if last - n >= 1)
    days.update(
        _nearest_weekday(n, last, first_weekday) for n in specials.nearest_weekday if n <= last
    )
    if specials.last_weekday:
        days.add(_nearest_weekday(last, last, first_weekday))
    return days


def _nearest_weekday(day: int, last: int, first_weekday: int) -> int:
    """The Monday-Friday day nearest to `day`, never leaving the month (Quartz `nW`)."""
    weekday = (first_weekday + day - 1) % 7
    if weekday == 6:  # Saturday: Friday before, or Monday after when day is the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 0:  # Sunday: Monday after, or Friday before when day is the last
        return day + 1 if day < last else day - 2
    return day


def _dow_days(dow: FieldSpec, last: int, first_weekday: int) -> set[int]:
    days = {d for d in range(1, last + 1) if (first_weekday + d - 1) % 7 in dow.values}
    specials = dow.specials
    for weekday in specials.last_of_weekday:
        first_match = 1 + (weekday - first_weekday) % 7
        days.add(first_match + 7 * ((last - first_match) // 7))
    for weekday, nth in specials.nth_weekday:
        day = 1 + (weekday - first_weekday) % 7 + 7 * (nth - 1)
        if day <= last:
            days.add(day)
    return days
