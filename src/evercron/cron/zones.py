"""Daylight-saving rules for aware datetimes, all in one place (Debian/vixie cron semantics).

A wall time that matches the fields is turned into real instants as follows:

* normal wall time: its one instant;
* repeated wall time (fall-back overlap): *elapsed* schedules (hour or minute field starts
  with `*`) fire at both instants, *fixed* schedules only at the first;
* skipped wall time (spring-forward gap): elapsed schedules do not fire; fixed schedules
  fire at the first instant after the gap (the transition itself).

Instants are integer POSIX seconds, compared as numbers: Python compares two datetimes of
one zone by wall clock and ignores `fold`, which is wrong across an overlap.
"""

from __future__ import annotations

import datetime as dt
import math

from evercron.cron.search import Wall, WallSearch

_ONE_SECOND = dt.timedelta(seconds=1)


def next_after(search: WallSearch, after: dt.datetime, fixed: bool) -> dt.datetime | None:
    """The first fire time strictly after aware `after`, in its zone."""
    tz = after.tzinfo
    assert tz is not None
    y, mo, d, h, mi, s = after.year, after.month, after.day, after.hour, after.minute, after.second
    offset = after.utcoffset()
    # Fast path, taken unless `after` is in the first pass of an overlap (elapsed schedules
    # must then look at the second pass): when the first matching wall time is an ordinary
    # one in the offset of `after`, no overlap or gap can put another fire time before it.
    # (datetime(..., fold=1) is built directly: `replace(fold=1)` is several times slower.)
    if fixed or dt.datetime(y, mo, d, h, mi, s, 0, tz, fold=1).utcoffset() == offset:
        wall = search.next_wall(y, mo, d, h, mi, s + 1)
        if wall is None:
            return None
        first = dt.datetime(*wall, 0, tz)
        if first.utcoffset() == offset and dt.datetime(*wall, 0, tz, fold=1).utcoffset() == offset:
            return first
    return next_instant(search, math.floor(after.timestamp()), tz, fixed)


def next_instant(search: WallSearch, after: int, tz: dt.tzinfo, fixed: bool) -> dt.datetime | None:
    """The first fire time strictly after POSIX second `after`, in zone `tz`."""
    start = dt.datetime.fromtimestamp(after, tz)
    found = _scan_forward(search, start.replace(tzinfo=None) + _ONE_SECOND, tz, after, fixed)
    if fixed or start.fold == 1:
        return found
    overlap = _overlap_length(start)
    if not overlap:
        return found
    # `after` is in the first pass of an overlap: the second pass, which comes next in real
    # time, repeats wall times that are behind it.
    second_pass = _transition(after, after + int(overlap.total_seconds()), tz)
    repeat = _second_pass_fire(search, second_pass, overlap, tz)
    if repeat is not None and (found is None or repeat.timestamp() < found.timestamp()):
        return repeat
    return found


def prev_instant(search: WallSearch, limit: int, tz: dt.tzinfo, fixed: bool) -> dt.datetime | None:
    """The last fire time at or before POSIX second `limit`, in zone `tz`."""
    start = dt.datetime.fromtimestamp(limit, tz)
    found = _scan_backward(search, start.replace(tzinfo=None), tz, limit, fixed)
    if start.fold == 0:
        return found
    overlap = _overlap_length(start.replace(fold=0))
    if not overlap:
        return found
    # `limit` is in the second pass of an overlap: the first pass, earlier in real time,
    # holds wall times that are ahead of it.
    second_pass = _transition(limit - int(overlap.total_seconds()), limit, tz)
    earlier = _first_pass_fire(search, second_pass, overlap, tz)
    if earlier is not None and (found is None or earlier.timestamp() > found.timestamp()):
        return earlier
    return found


def _scan_forward(
    search: WallSearch, wall: dt.datetime, tz: dt.tzinfo, after: int, fixed: bool
) -> dt.datetime | None:
    y, mo, d, h, mi, s = wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second
    while True:
        found = search.next_wall(y, mo, d, h, mi, s)
        if found is None:
            return None
        fire = _first_instant_after(found, tz, after, fixed)
        if fire is not None:
            return fire
        y, mo, d, h, mi, s = found
        s += 1


def _scan_backward(
    search: WallSearch, wall: dt.datetime, tz: dt.tzinfo, limit: int, fixed: bool
) -> dt.datetime | None:
    y, mo, d, h, mi, s = wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second
    while True:
        found = search.prev_wall(y, mo, d, h, mi, s)
        if found is None:
            return None
        fire = _last_instant_until(found, tz, limit, fixed)
        if fire is not None:
            return fire
        y, mo, d, h, mi, s = found
        s -= 1


def _second_pass_fire(
    search: WallSearch, second_pass: int, overlap: dt.timedelta, tz: dt.tzinfo
) -> dt.datetime | None:
    """The first matching wall time of the overlap's second pass (fold 1), if any."""
    begin = dt.datetime.fromtimestamp(second_pass, tz).replace(tzinfo=None)
    found = search.next_wall(
        begin.year, begin.month, begin.day, begin.hour, begin.minute, begin.second
    )
    if found is None or dt.datetime(*found) >= begin + overlap:
        return None
    return dt.datetime(*found, tzinfo=tz, fold=1)


def _first_pass_fire(
    search: WallSearch, second_pass: int, overlap: dt.timedelta, tz: dt.tzinfo
) -> dt.datetime | None:
    """The last matching wall time of the overlap's first pass (fold 0), if any."""
    begin = dt.datetime.fromtimestamp(second_pass, tz).replace(tzinfo=None)
    end = begin + overlap - _ONE_SECOND
    found = search.prev_wall(end.year, end.month, end.day, end.hour, end.minute, end.second)
    if found is None or dt.datetime(*found) < begin:
        return None
    return dt.datetime(*found, tzinfo=tz, fold=0)


def _overlap_length(moment: dt.datetime) -> dt.timedelta:
    """How far the clock is set back when `moment` (fold 0) is a repeated wall time, else 0."""
    first, second = moment.utcoffset(), moment.replace(fold=1).utcoffset()
    if first is None or second is None or first <= second:
        return dt.timedelta(0)
    return first - second


def _first_instant_after(wall: Wall, tz: dt.tzinfo, after: int, fixed: bool) -> dt.datetime | None:
    first = dt.datetime(*wall, tzinfo=tz)
    second = first.replace(fold=1)
    offset_first, offset_second = first.utcoffset(), second.utcoffset()
    if offset_first == offset_second:
        return first if first.timestamp() > after else None
    assert offset_first is not None and offset_second is not None
    if offset_first > offset_second:  # repeated wall time
        if first.timestamp() > after:
            return first
        return second if not fixed and second.timestamp() > after else None
    if not fixed:  # skipped wall time
        return None
    transition = _gap_end(first, tz)
    return dt.datetime.fromtimestamp(transition, tz) if transition > after else None


def _last_instant_until(wall: Wall, tz: dt.tzinfo, limit: int, fixed: bool) -> dt.datetime | None:
    first = dt.datetime(*wall, tzinfo=tz)
    second = first.replace(fold=1)
    offset_first, offset_second = first.utcoffset(), second.utcoffset()
    if offset_first == offset_second:
        return first if first.timestamp() <= limit else None
    assert offset_first is not None and offset_second is not None
    if offset_first > offset_second:  # repeated wall time
        if not fixed and second.timestamp() <= limit:
            return second
        return first if first.timestamp() <= limit else None
    if not fixed:  # skipped wall time
        return None
    transition = _gap_end(first, tz)
    return dt.datetime.fromtimestamp(transition, tz) if transition <= limit else None


def _gap_end(skipped: dt.datetime, tz: dt.tzinfo) -> int:
    """The POSIX second at which the gap containing wall time `skipped` (fold 0) ends."""
    # Read with the offset before the gap (fold 0) the skipped time lands after the gap;
    # read with the offset after it (fold 1), before the gap.
    return _transition(int(skipped.replace(fold=1).timestamp()), int(skipped.timestamp()), tz)


def _transition(before: int, after: int, tz: dt.tzinfo) -> int:
    """The first POSIX second in (before, after] with the UTC offset in force at `after`."""
    late_offset = dt.datetime.fromtimestamp(after, tz).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if dt.datetime.fromtimestamp(middle, tz).utcoffset() == late_offset:
            after = middle
        else:
            before = middle
    return after
