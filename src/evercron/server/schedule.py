"""/api/v1/schedule/preview: the engine's reading of an expression as it is typed, so a
client never reimplements cron."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from evercron.cron import CronSyntaxError, parse
from evercron.scheduler.timing import local_zone
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, FireTime, IsoTime, PreviewOut
from evercron.timezones import UnknownZone, load_zone

router = APIRouter(prefix="/api/v1/schedule", tags=["schedule"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 422)}


@router.get("/preview", response_model=PreviewOut, responses=_ERRORS)
async def preview(
    expression: Annotated[str, Query(max_length=1000, description="A cron expression")],
    timezone: Annotated[
        str | None, Query(max_length=255, description="IANA zone (default: the daemon's)")
    ] = None,
    count: Annotated[int, Query(ge=1, le=100, description="How many fire times")] = 5,
    after: Annotated[
        IsoTime | None, Query(description="Start after this instant (default: now)")
    ] = None,
) -> PreviewOut:
    """The expression's explanation and its next `count` fire times in `timezone`, each
    marked where a daylight saving change moved the zone's offset. 422 with the engine's
    message for an expression it refuses (e.g. `hour field "24": 24 is out of range
    0-23`) or for an unknown time zone."""
    zone = _zone(timezone)
    try:
        schedule = parse(expression)
    except CronSyntaxError as error:
        raise ApiError(422, str(error)) from None
    moment = after or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # a naive `after` is UTC, as every API time
    try:
        start = moment.astimezone(zone)
        times = schedule.next_n(start, count)
    except (OverflowError, ValueError):
        raise ApiError(422, f"after: {after} is out of the range of dates") from None
    return PreviewOut(
        expression=expression,
        timezone=str(zone),
        explanation=schedule.explain(),
        fire_times=_fire_times(times, start.utcoffset()),
    )


def _zone(name: str | None) -> dt.tzinfo:
    if name is None or name == "":
        return local_zone()
    try:
        return load_zone(name)
    except UnknownZone as error:
        raise ApiError(422, str(error)) from None


def _fire_times(times: list[dt.datetime], offset: dt.timedelta | None) -> list[FireTime]:
    listed = []
    for moment in times:
        listed.append(
            FireTime(
                at=moment.astimezone(dt.UTC),
                local=moment.isoformat(),
                zone=moment.tzname() or "",
                dst_change=moment.utcoffset() != offset,
            )
        )
        offset = moment.utcoffset()
    return listed
