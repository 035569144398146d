"""Cron fields: each `Field` knows its range and names and parses its own syntax.

A parsed field is a `FieldSpec`: the plain set of values it allows plus, for the two day
fields, the special forms (`L`, `L-n`, `nW`, `LW` in day-of-month; `nL`, `n#k` in
day-of-week) that depend on the month they are evaluated in.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from evercron.cron.errors import CronSyntaxError

_MONTH_NAMES = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_DAY_NAMES = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]


def _name_table(names: list[str], first: int) -> dict[str, int]:
    table: dict[str, int] = {}
    for offset, name in enumerate(names):
        table[name] = first + offset
        table[name[:3]] = first + offset
    return table


_MONTHS = _name_table(_MONTH_NAMES, 1)
_DAYS = _name_table(_DAY_NAMES, 0)
_DAY_SPECIAL_SHAPE = re.compile(r"[\d-]*[lw#][\d-]*")


class Field(enum.Enum):
    """One position of a cron expression, with its range and accepted names."""

    SECOND = ("second", 0, 59)
    MINUTE = ("minute", 0, 59)
    HOUR = ("hour", 0, 23)
    DAY_OF_MONTH = ("day-of-month", 1, 31)
    MONTH = ("month", 1, 12)
    DAY_OF_WEEK = ("day-of-week", 0, 7)
    YEAR = ("year", 1970, 2099)

    def __init__(self, label: str, low: int, high: int) -> None:
        self.label = label
        self.low = low
        self.high = high
        self.is_day_of_week = label == "day-of-week"
        self.is_month = label == "month"
        self.is_day_of_month = label == "day-of-month"
        self.star_high = 6 if self.is_day_of_week else high
        """The end of the field for `*` and `a/n` (Sunday counts once in day-of-week)."""
        self.size = self.star_high - low + 1
        """How many distinct values the field has (the largest step allowed)."""
        self.every_value = frozenset(range(low, self.star_high + 1))
        self.name_table = _MONTHS if self.is_month else _DAYS if self.is_day_of_week else {}

    def parse(self, text: str) -> FieldSpec:
        """Parse one field's text; raise `CronSyntaxError` naming this field on bad input."""
        if text == "*":
            return FieldSpec(self, text, True, self.every_value, _NO_SPECIALS)
        if text.isdigit():  # the other common case: one number
            value = self._normalize(self._value(text, text))
            return FieldSpec(self, text, False, frozenset((value,)), _NO_SPECIALS)
        if not text:
            raise self._error(text, "the field is empty")
        values: set[int] = set()
        collector = _DaySpecials() if self.is_day_of_month or self.is_day_of_week else None
        for item in text.split(","):
            if not item:
                raise self._error(text, "empty item in list")
            if item.isdigit():
                values.add(self._normalize(self._value(item, text)))
                continue
            lowered = item.lower()
            if collector is None:
                if _DAY_SPECIAL_SHAPE.fullmatch(lowered):
                    raise self._error(text, "L, W and # are only allowed in the day fields")
            elif self._parse_special(lowered, text, collector):
                continue
            values.update(self._parse_item(item, text))
        specials = collector.freeze() if collector and collector.found else _NO_SPECIALS
        return FieldSpec(self, text, text[0] in "*?", frozenset(values), specials)

    # -- items -------------------------------------------------------------------------

    def _parse_item(self, item: str, text: str) -> list[int]:
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            step = self._number(step_text, text, "step")
            if not 1 <= step <= self.size:
                raise self._error(text, f"step {step} is out of range 1-{self.size}")
        if base in ("*", "?"):
            if base == "?" and not (self.is_day_of_month or self.is_day_of_week):
                raise self._error(text, "'?' is only allowed in day-of-month and day-of-week")
            return list(range(self.low, self.star_high + 1, step))
        first_text, dash, last_text = base.partition("-")
        first = self._value(first_text, text)
        if dash:
            last = self._value(last_text, text)
        elif slash:
            last = self.star_high
        else:
            return [self._normalize(first)]
        if first <= last:
            sequence = list(range(first, last + 1))
        else:  # wrap-around, e.g. 22-2 or FRI-MON (counting Sunday once)
            sequence = list(range(first, self.star_high + 1)) + list(range(self.low, last + 1))
        return sorted({self._normalize(v) for v in sequence[::step]})

    def _normalize(self, value: int) -> int:
        return 0 if value == 7 and self.is_day_of_week else value

    def _value(self, token: str, text: str) -> int:
        names = self.name_table
        if names and token.lower() in names:
            return names[token.lower()]
        if not token.isdigit() or not token.isascii():
            hint = ""
            if names:
                first, last = ("jan", "dec") if self.is_month else ("sun", "sat")
                hint = f" or a name ({first}-{last})"
            raise self._error(text, f'"{token}" is not a number{hint}')
        value = int(token)
        if not self.low <= value <= self.high:
            raise self._error(text, f"{value} is out of range {self.low}-{self.high}")
        return value

    def _number(self, token: str, text: str, what: str) -> int:
        if not token.isdigit() or not token.isascii():
            raise self._error(text, f'{what} "{token}" is not a number')
        return int(token)

    # -- day specials ------------------------------------------------------------------

    def _parse_special(self, item: str, text: str, out: _DaySpecials) -> bool:
        if self.is_day_of_month:
            return self._parse_dom_special(item, text, out)
        return self._parse_dow_special(item, text, out)

    def _parse_dom_special(self, item: str, text: str, out: _DaySpecials) -> bool:
        if item == "l":
            out.last_minus.add(0)
        elif item == "lw":
            out.last_weekday = True
        elif item.startswith("l-"):
            offset = self._number(item[2:], text, "offset")
            if offset > 30:
                raise self._error(text, f"L-{offset}: offset is out of range 0-30")
            out.last_minus.add(offset)
        elif item.endswith("w") and item[:-1].isdigit():
            out.nearest_weekday.add(self._value(item[:-1], text))
        elif "l" in item or "w" in item or "#" in item:
            raise self._error(text, f'"{item}" is not valid (use L, L-n, nW or LW)')
        else:
            return False
        return True

    def _parse_dow_special(self, item: str, text: str, out: _DaySpecials) -> bool:
        if "#" in item:
            day_text, _, nth_text = item.partition("#")
            day = self._normalize(self._value(day_text, text))
            nth = self._number(nth_text, text, "occurrence")
            if not 1 <= nth <= 5:
                raise self._error(text, f"#{nth}: occurrence is out of range 1-5")
            out.nth_weekday.add((day, nth))
        elif item.endswith("l") and len(item) > 1:
            out.last_of_weekday.add(self._normalize(self._value(item[:-1], text)))
        elif item == "l":
            raise self._error(text, '"L" alone is not valid here (use nL: last n-day)')
        else:
            return False
        return True

    def _error(self, text: str, reason: str) -> CronSyntaxError:
        return CronSyntaxError(f'{self.label} field "{text}": {reason}')


class _DaySpecials:
    """Mutable collector for the day-field special forms while parsing."""

    def __init__(self) -> None:
        self.last_minus: set[int] = set()
        self.nearest_weekday: set[int] = set()
        self.last_weekday = False
        self.last_of_weekday: set[int] = set()
        self.nth_weekday: set[tuple[int, int]] = set()

    @property
    def found(self) -> bool:
        """Whether any special form was collected."""
        return bool(
            self.last_minus
            or self.nearest_weekday
            or self.last_weekday
            or self.last_of_weekday
            or self.nth_weekday
        )

    def freeze(self) -> DaySpecials:
        return DaySpecials(
            frozenset(self.last_minus),
            frozenset(self.nearest_weekday),
            self.last_weekday,
            frozenset(self.last_of_weekday),
            frozenset(self.nth_weekday),
        )


class DaySpecials(NamedTuple):
    """Day rules that depend on the month: `L-n`, `nW`, `LW` (dom); `nL`, `n#k` (dow)."""

    last_minus: frozenset[int] = frozenset()
    nearest_weekday: frozenset[int] = frozenset()
    last_weekday: bool = False
    last_of_weekday: frozenset[int] = frozenset()
    nth_weekday: frozenset[tuple[int, int]] = frozenset()


class FieldSpec(NamedTuple):
    """A parsed field: the values it allows, whether it was a wildcard, the day specials."""

    field: Field
    text: str
    star: bool
    values: frozenset[int]
    specials: DaySpecials


_NO_SPECIALS = DaySpecials()
