"""`parse` and `CronExpr`: the public face of the cron engine."""

from __future__ import annotations

import datetime as dt
import math
from typing import Final

from evercron.cron.errors import CronSyntaxError
from evercron.cron.explain import describe_every, describe_fields
from evercron.cron.fields import Field, FieldSpec
from evercron.cron.search import WallSearch
from evercron.cron.zones import next_after, next_instant, prev_instant
from evercron.units import parse_duration

MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
    "@minutely": "* * * * *",
}
_LAYOUTS: Final = {
    5: (Field.MINUTE, Field.HOUR, Field.DAY_OF_MONTH, Field.MONTH, Field.DAY_OF_WEEK),
    6: (Field.MINUTE, Field.HOUR, Field.DAY_OF_MONTH, Field.MONTH, Field.DAY_OF_WEEK, Field.YEAR),
    7: tuple(Field),
}
_SECOND_ZERO: Final = Field.SECOND.parse("0")
_ANY_YEAR: Final = Field.YEAR.parse("*")
_NAIVE_EPOCH: Final = dt.datetime(1970, 1, 1)
_ONE_SECOND: Final = dt.timedelta(seconds=1)
_SIX_FIELD_WARNING: Final = (
    "the 6th field is the year (6 fields = min hour dom month dow year); "
    "a seconds field needs 7 fields"
)


def parse(text: str) -> CronExpr:
    """Parse a cron expression, a macro (`@daily`), `@every <duration>` or `@reboot`.

    Raises `CronSyntaxError` (a `ValueError`) naming the field, the bad text and the
    allowed values, also for expressions that can never fire.
    """
    if not isinstance(text, str):
        raise CronSyntaxError(f"expected a string, got {type(text).__name__}")
    return CronExpr(text)


class CronExpr:
    """An immutable, hashable, thread-safe parsed schedule.

    `next`, `prev` and `matches` accept naive datetimes (plain wall time, naive results)
    or aware ones (computed in their own zone with Debian cron's DST rules; results carry
    that zone). Resolution is one second; every call does bounded work.
    """

    __slots__ = ("_every", "_fixed", "_reboot", "_search", "_seven_fields", "_text", "warnings")
    _every: int
    _fixed: bool
    _reboot: bool
    _search: WallSearch | None
    _seven_fields: list[str]
    _text: str
    warnings: tuple[str, ...]
    """Things that parse but are probably not what the author meant (for the CLI to show)."""

    def __init__(self, text: str) -> None:
        parsed = _Parsed(text.strip())
        for name in self.__slots__:
            object.__setattr__(self, name, getattr(parsed, name))

    # -- queries -----------------------------------------------------------------------

    def next(self, after: dt.datetime) -> dt.datetime | None:
        """The first fire time strictly after `after`, or None when there is none."""
        search = self._search
        tz = after.tzinfo
        if search is not None and tz is None:
            found = search.next_wall(
                after.year, after.month, after.day, after.hour, after.minute, after.second + 1
            )
            return None if found is None else dt.datetime(*found)
        try:
            if tz is None:
                return self._next_every_naive(after)
            if self._search is not None:
                return next_after(self._search, after, self._fixed)
            return self._next_aware(math.floor(after.timestamp()), tz)
        except (OverflowError, ValueError, OSError):  # beyond datetime's range
            return None

    def next_n(self, after: dt.datetime, n: int) -> list[dt.datetime]:
        """Up to `n` consecutive fire times after `after` (fewer when the schedule ends)."""
        times: list[dt.datetime] = []
        current: dt.datetime | None = after
        while len(times) < n and current is not None:
            current = self.next(current)
            if current is not None:
                times.append(current)
        return times

    def prev(self, before: dt.datetime) -> dt.datetime | None:
        """The last fire time strictly before `before`, or None when there is none."""
        tz = before.tzinfo
        try:
            if tz is None:
                return self._prev_naive(before)
            return self._prev_aware(math.ceil(before.timestamp()) - 1, tz)
        except (OverflowError, ValueError, OSError):
            return None

    def matches(self, moment: dt.datetime) -> bool:
        """Whether `moment` is a fire time (same rules as `next`, DST included)."""
        if moment.microsecond or self._reboot:
            return False
        if moment.tzinfo is None:
            if self._search is not None:
                m = moment
                return self._search.matches_wall(m.year, m.month, m.day, m.hour, m.minute, m.second)
            return _naive_seconds(moment) % self._every == 0
        instant = int(moment.timestamp())
        found = self._next_aware(instant - 1, moment.tzinfo)
        return found is not None and int(found.timestamp()) == instant

    def explain(self) -> str:
        """A plain-English description of the schedule."""
        if self._reboot:
            return "Once at every machine boot"
        if self._every:
            return describe_every(self._every)
        return describe_fields(self._seven_fields)

    @property
    def is_reboot(self) -> bool:
        """True for `@reboot`: it has no fire times of its own; the daemon runs it at boot."""
        return self._reboot

    @property
    def is_fixed_time(self) -> bool:
        """True when both the minute and the hour field are restricted (neither starts with
        `*`): the schedule names wall-clock times of day, as Debian cron's "fixed-time"
        jobs. Other schedules (and `@every`) follow elapsed time."""
        return self._fixed

    @property
    def every_seconds(self) -> int | None:
        """The period of an `@every` schedule, else None."""
        return self._every or None

    # -- internals ---------------------------------------------------------------------

    def _next_aware(self, after: int, tz: dt.tzinfo) -> dt.datetime | None:
        if self._search is not None:
            return next_instant(self._search, after, tz, self._fixed)
        if self._reboot:
            return None
        return dt.datetime.fromtimestamp((after // self._every + 1) * self._every, tz)

    def _prev_aware(self, limit: int, tz: dt.tzinfo) -> dt.datetime | None:
        if self._search is not None:
            return prev_instant(self._search, limit, tz, self._fixed)
        if self._reboot:
            return None
        return dt.datetime.fromtimestamp(limit // self._every * self._every, tz)

    def _next_every_naive(self, after: dt.datetime) -> dt.datetime | None:
        if self._reboot:
            return None
        seconds = (_naive_seconds(after) // self._every + 1) * self._every
        return _NAIVE_EPOCH + dt.timedelta(seconds=seconds)

    def _prev_naive(self, before: dt.datetime) -> dt.datetime | None:
        if self._search is not None:
            b = before
            second = b.second if b.microsecond else b.second - 1
            found = self._search.prev_wall(b.year, b.month, b.day, b.hour, b.minute, second)
            return None if found is None else dt.datetime(*found)
        if self._reboot:
            return None
        limit = math.ceil((before - _NAIVE_EPOCH) / _ONE_SECOND) - 1
        return _NAIVE_EPOCH + dt.timedelta(seconds=limit // self._every * self._every)

    # -- value semantics ---------------------------------------------------------------

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"CronExpr({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronExpr) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __reduce__(self) -> tuple[type[CronExpr], tuple[str]]:
        return CronExpr, (self._text,)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CronExpr is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("CronExpr is immutable")


class _Parsed:
    """The parse of one expression's text, before it is frozen into a `CronExpr`."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._every = 0
        self._reboot = False
        self._search: WallSearch | None = None
        self._fixed = False
        self._seven_fields: list[str] = []
        self.warnings: tuple[str, ...] = ()
        if text.startswith("@"):
            self._parse_macro(text)
        else:
            self._parse_fields(text)

    def _parse_macro(self, text: str) -> None:
        name, _, argument = text.partition(" ")
        name = name.lower()
        if name == "@reboot" and not argument.strip():
            self._reboot = True
        elif name == "@every":
            self._every = _every_seconds(argument.strip())
        elif name in MACROS and not argument.strip():
            self._parse_fields(MACROS[name])
        else:
            known = ", ".join([*MACROS, "@every <duration>", "@reboot"])
            raise CronSyntaxError(f'unknown macro "{text}": expected one of {known}')

    def _parse_fields(self, text: str) -> None:
        parts = text.split()
        layout = _LAYOUTS.get(len(parts))
        if layout is None:
            raise CronSyntaxError(
                f'expected 5, 6 or 7 fields (or a macro like @daily), got {len(parts)}: "{text}"'
            )
        specs = [field.parse(part) for field, part in zip(layout, parts, strict=True)]
        year: FieldSpec | None
        if len(specs) == 7:
            second, minute, hour, dom, month, dow, year = specs
        else:
            second, year = _SECOND_ZERO, specs[5] if len(specs) == 6 else None
            minute, hour, dom, month, dow = specs[:5]
        search = WallSearch(second, minute, hour, dom, month, dow, year)
        if not search.can_fire():
            raise CronSyntaxError(_never_fires(dom, month, dow, year))
        self._search = search
        self._fixed = not (minute.star or hour.star)
        self._seven_fields = [
            s.text for s in (second, minute, hour, dom, month, dow, year or _ANY_YEAR)
        ]
        if len(parts) == 6 and parts[5] == "*":
            self.warnings = (_SIX_FIELD_WARNING,)


def _naive_seconds(moment: dt.datetime) -> int:
    return (moment - _NAIVE_EPOCH) // _ONE_SECOND


def _every_seconds(argument: str) -> int:
    try:
        seconds = parse_duration(argument, at_most=None)  # a schedule may span years
    except ValueError as error:
        raise CronSyntaxError(f'@every "{argument}": {error}') from None
    if seconds < 1 or seconds != int(seconds):
        raise CronSyntaxError(f'@every "{argument}": must be a whole number of seconds >= 1s')
    return int(seconds)


def _never_fires(dom: FieldSpec, month: FieldSpec, dow: FieldSpec, year: FieldSpec | None) -> str:
    where = f' in year field "{year.text}"' if year is not None else ""
    return (
        f'the expression can never fire: no day matches day-of-month "{dom.text}" and '
        f'day-of-week "{dow.text}" in month field "{month.text}"{where}'
    )
