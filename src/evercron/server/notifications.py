"""/api/v1/notifications: recent deliveries, and a test notification through a channel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from evercron.server.context import context_of
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, NotificationOut, NotifyTestIn, NotifyTestOut
from evercron.store import Delivery, DeliveryState

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 404, 422)}


@router.get("", response_model=list[NotificationOut], responses=_ERRORS)
async def list_notifications(
    request: Request,
    channel: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[DeliveryState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[NotificationOut]:
    """Recent deliveries, newest first: event, channel, run, state, attempts, last error."""
    found = await context_of(request).store.list_deliveries(limit, channel, state)
    return [_out(delivery) for delivery in found]


@router.post("/test", response_model=NotifyTestOut, responses=_ERRORS)
async def test_notification(body: NotifyTestIn, request: Request) -> NotifyTestOut:
    """Send a test notification through a channel now: 200 with `ok` false and the
    reason when the receiver refused it or could not be reached, 404 for no such channel."""
    notify = context_of(request).notify
    try:
        if notify is None:
            raise KeyError(body.channel)
        outcome = await notify.trial(body.channel)
    except KeyError:
        raise ApiError(404, f'no notify channel named "{body.channel}"') from None
    return NotifyTestOut(channel=body.channel, ok=outcome.ok, outcome=outcome.detail)


def _out(delivery: Delivery) -> NotificationOut:
    event = delivery.event
    pending = delivery.state is DeliveryState.PENDING
    return NotificationOut(
        id=delivery.id,
        event=event.kind.value,
        channel=delivery.channel,
        job=event.job,
        run=event.run.id,
        state=delivery.state.value,
        summary=delivery.summary,
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        outcome=delivery.outcome,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_at if pending else None,
        sent_at=delivery.sent_at,
    )
