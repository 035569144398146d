"""Wall-clock search: the next or previous matching calendar time, field by field.

Works on plain integers (year, month, day, hour, minute, second) with O(1) lookup tables
per field, so one step costs a handful of list lookups; time zones are handled a layer up
(`evercron.cron.zones`).
"""

from __future__ import annotations

import bisect
import datetime as dt

from evercron.cron.days import DayTables, allowed_days, tables_for
from evercron.cron.fields import FieldSpec
from evercron.cron.tables import next_table, prev_table

Wall = tuple[int, int, int, int, int, int]
MIN_YEAR = dt.MINYEAR
MAX_YEAR = dt.MAXYEAR
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_CACHE_LIMIT = 4096


_SHARED_TABLES: dict[tuple[frozenset[int], int, bool], tuple[int, ...]] = {}
_SHARED_TABLES_LIMIT = 4096


def _shared_table(values: frozenset[int], size: int, forward: bool) -> tuple[int, ...]:
    """The lookup table for a field's values, shared by every expression that uses them.

    Thousands of jobs mostly repeat a few fields (`0`, `*`, `*/5`), so sharing keeps the
    memory per loaded job small. Races are harmless: the tables are immutable values.
    """
    key = (values, size, forward)
    table = _SHARED_TABLES.get(key)
    if table is None:
        if len(_SHARED_TABLES) >= _SHARED_TABLES_LIMIT:
            _SHARED_TABLES.clear()
        table = tuple(next_table(values, size) if forward else prev_table(values, size))
        _SHARED_TABLES[key] = table
    return table


def _obviously_fires(dom: FieldSpec, dow: FieldSpec, months: frozenset[int]) -> bool:
    """A quick sufficient test that some day of some allowed month matches."""
    longest = max(map(_LONGEST_MONTH.__getitem__, months))
    dom_any = (bool(dom.values) and min(dom.values) <= longest) or 0 in dom.specials.last_minus
    dow_any = bool(dow.values or dow.specials.last_of_weekday) or any(
        nth <= 4 for _, nth in dow.specials.nth_weekday
    )
    if dom.star or dow.star:  # both must match on the same day
        return (len(dom.values) == 31 and dow_any) or (len(dow.values) == 7 and dom_any)
    return dom_any or dow_any


def _month_shape(year: int, month: int) -> tuple[int, int]:
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    first_weekday = (dt.date(year, month, 1).weekday() + 1) % 7  # cron numbering: 0 = Sunday
    return _DAYS_IN_MONTH[month] + leap, first_weekday


class WallSearch:
    """Finds matching wall times of one parsed expression. Safe to share between threads."""

    __slots__ = (
        "_dom",
        "_dow",
        "_hour_next",
        "_hour_prev",
        "_minute_next",
        "_minute_prev",
        "_month_cache",
        "_month_next",
        "_month_prev",
        "_months",
        "_second_next",
        "_second_prev",
        "_shape_cache",
        "_years",
    )

    def __init__(
        self,
        second: FieldSpec,
        minute: FieldSpec,
        hour: FieldSpec,
        dom: FieldSpec,
        month: FieldSpec,
        dow: FieldSpec,
        year: FieldSpec | None,
    ) -> None:
        self._second_next = _shared_table(second.values, 61, True)
        self._second_prev = _shared_table(second.values, 60, False)
        self._minute_next = _shared_table(minute.values, 61, True)
        self._minute_prev = _shared_table(minute.values, 60, False)
        self._hour_next = _shared_table(hour.values, 25, True)
        self._hour_prev = _shared_table(hour.values, 24, False)
        self._month_next = _shared_table(month.values, 14, True)
        self._month_prev = _shared_table(month.values, 13, False)
        self._months = month.values
        self._years = None if year is None or year.star else tuple(sorted(year.values))
        self._dom = dom
        self._dow = dow
        self._shape_cache: dict[int, DayTables] = {}
        self._month_cache: dict[int, DayTables] = {}

    def can_fire(self) -> bool:
        """Whether any calendar day at all satisfies the day, month and year fields."""
        if self._years is None and _obviously_fires(self._dom, self._dow, self._months):
            return True
        months = sorted(self._months)
        if self._years is None:
            shapes = [
                (days, first)
                for m in months
                for days in ((28, 29) if m == 2 else (_DAYS_IN_MONTH[m],))
                for first in range(7)
            ]
        else:
            shapes = [_month_shape(y, m) for y in self._years for m in months]
        return any(self._shape_tables(*shape)[0][1] > 0 for shape in shapes)

    def _shape_tables(self, days_in_month: int, first_weekday: int) -> DayTables:
        key = days_in_month * 7 + first_weekday
        tables = self._shape_cache.get(key)
        if tables is None:
            tables = tables_for(allowed_days(self._dom, self._dow, days_in_month, first_weekday))
            self._shape_cache[key] = tables
        return tables

    def _day_tables(self, year: int, month: int) -> DayTables:
        key = year * 16 + month
        tables = self._month_cache.get(key)
        if tables is None:
            if len(self._month_cache) >= _MONTH_CACHE_LIMIT:
                self._month_cache.clear()
            tables = self._shape_tables(*_month_shape(year, month))
            self._month_cache[key] = tables
        return tables

    def next_wall(self, y: int, mo: int, d: int, h: int, mi: int, s: int) -> Wall | None:
        """The first matching wall time at or after the given one (`s` may be 60)."""
        years, month_next, month_cache = self._years, self._month_next, self._month_cache
        hour_next, minute_next, second_next = self._hour_next, self._minute_next, self._second_next
        while True:
            if years is not None:
                index = bisect.bisect_left(years, y)
                if index == len(years):
                    return None
                if years[index] != y:
                    y, mo, d, h, mi, s = years[index], 1, 1, 0, 0, 0
            elif y > MAX_YEAR:
                return None
            found = month_next[mo]
            if found < 0:
                y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                continue
            if found != mo:
                mo, d, h, mi, s = found, 1, 0, 0, 0
            tables = month_cache.get(y * 16 + mo) or self._day_tables(y, mo)
            found = tables[0][d]
            if found < 0:
                mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
                continue
            if found != d:
                d, h, mi, s = found, 0, 0, 0
            found = hour_next[h]
            if found < 0:
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if found != h:
                h, mi, s = found, 0, 0
            found = minute_next[mi]
            if found < 0:
                h, mi, s = h + 1, 0, 0
                continue
            if found != mi:
                mi, s = found, 0
            found = second_next[s]
            if found < 0:
                mi, s = mi + 1, 0
                continue
            return y, mo, d, h, mi, found

    def prev_wall(self, y: int, mo: int, d: int, h: int, mi: int, s: int) -> Wall | None:
        """The last matching wall time at or before the given one (`s` may be -1)."""
        years, month_prev = self._years, self._month_prev
        hour_prev, minute_prev, second_prev = self._hour_prev, self._minute_prev, self._second_prev
        while True:
            if s < 0:
                mi, s = mi - 1, 59
            if mi < 0:
                h, mi = h - 1, 59
            if h < 0:
                d, h = d - 1, 23
            if mo < 1:
                y, mo = y - 1, 12
            if years is not None:
                index = bisect.bisect_right(years, y) - 1
                if index < 0:
                    return None
                if years[index] != y:
                    y, mo, d, h, mi, s = years[index], 12, 31, 23, 59, 59
            elif y < MIN_YEAR:
                return None
            found = month_prev[mo]
            if found < 0:
                y, mo, d, h, mi, s = y - 1, 12, 31, 23, 59, 59
                continue
            if found != mo:
                mo, d, h, mi, s = found, 31, 23, 59, 59
            found = self._day_tables(y, mo)[1][d]
            if found < 0:
                mo, d, h, mi, s = mo - 1, 31, 23, 59, 59
                continue
            if found != d:
                d, h, mi, s = found, 23, 59, 59
            found = hour_prev[h]
            if found < 0:
                d, h, mi, s = d - 1, 23, 59, 59
                continue
            if found != h:
                h, mi, s = found, 59, 59
            found = minute_prev[mi]
            if found < 0:
                h, mi, s = h - 1, 59, 59
                continue
            if found != mi:
                mi, s = found, 59
            found = second_prev[s]
            if found < 0:
                mi, s = mi - 1, 59
                continue
            return y, mo, d, h, mi, found

    def matches_wall(self, y: int, mo: int, d: int, h: int, mi: int, s: int) -> bool:
        """Whether this exact wall time matches every field."""
        if self._years is not None and y not in self._years:
            return False
        return (
            self._second_next[s] == s
            and self._minute_next[mi] == mi
            and self._hour_next[h] == h
            and self._month_next[mo] == mo
            and self._day_tables(y, mo)[0][d] == d
        )
