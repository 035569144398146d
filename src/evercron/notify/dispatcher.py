"""The delivery loop: the outbox's events fanned out to channels, sent in the background,
retried with backoff, settled in the store.

It never blocks scheduling: it runs in a task of its own, its store calls are short, its
sends go over the network with a timeout. It wakes when this process may have written an
event (it is a `RunObserver`: a start, a recorded end) and looks every `poll` seconds for
events and retries written by other processes (an upgrade's other generation, a restart,
another node). A delivery is claimed for `lease` seconds of the store's clock before it
is sent, so that whichever process sends it, it is sent once; a process that dies while
sending leaves it to the next one after the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence

import httpx

from evercron.logfields import about
from evercron.model import NotifyEvent
from evercron.notify.channels import Channel, Smtp
from evercron.notify.payload import TAIL_BYTES, notice_for, trial_notice
from evercron.notify.senders import SEND_TIMEOUT, Outcome, send
from evercron.scheduler.observer import RunEnded, RunStarted
from evercron.store import (
    ChannelQuota,
    Delivery,
    DeliveryState,
    EventPolicy,
    FanOut,
    OutboxEvent,
    Store,
    StoreUnavailable,
)

log = logging.getLogger("evercron.notify")

POLL = 1.0
"""Seconds between looks for events and retries written by other processes."""
LEASE = 60.0
"""Seconds a claimed delivery is this process's alone (far more than one send takes)."""
COMPLAIN_EVERY = 3600.0
"""A channel's failed deliveries are logged at most once per this many seconds."""
_IN_FLIGHT = 16  # sends at once
_FAN_OUT_BATCH = 200
_WITH_OUTPUT = {NotifyEvent.FAILED, NotifyEvent.RECOVERED, NotifyEvent.SUCCEEDED}

Counter = Callable[[str, str], None]
"""Told (channel, outcome) for each delivery attempt: sent, failed (to be retried),
given_up, suppressed (over the hourly limit)."""


class UnknownChannel(KeyError):
    """No channel has that name."""


class Dispatcher:
    """Sends the notifications of the store's outbox through the configured channels."""

    def __init__(
        self,
        store: Store,
        owner: str,
        channels: Sequence[Channel],
        smtp: Smtp | None = None,
        public_url: str | None = None,
        *,
        poll: float = POLL,
        lease: float = LEASE,
        counted: Counter | None = None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._channels = {channel.name: channel for channel in channels}
        self._smtp = smtp
        self._public_url = public_url
        self._poll = poll
        self._lease = lease
        self._counted = counted or (lambda channel, outcome: None)
        self._wake = asyncio.Event()
        self._closing = False
        self._sending: set[asyncio.Task[None]] = set()
        # (channel, job) -> the latest send of that lane: one job's notifications reach
        # a channel in the order they were claimed (which is the order they happened)
        self._lanes: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._complaints: dict[str, tuple[float, int]] = {}  # channel -> (logged at, since)
        self._http: httpx.AsyncClient | None = None

    def policy(self, node: str | None) -> EventPolicy:
        """What the store should write for these channels: the events some channel sends
        (`node` naming this daemon in them), and repeats only when some channel sends
        every run's events."""
        return EventPolicy(
            frozenset(event for channel in self._channels.values() for event in channel.events),
            node,
            repeats=any(channel.every_run for channel in self._channels.values()),
        )

    def wake(self) -> None:
        """Look at the outbox now (an event was just written)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until `close()`; cancelling it drops what is in flight (the store
        keeps each claimed delivery for another process after its lease)."""
        if not self._channels:
            return
        self._http = httpx.AsyncClient(timeout=SEND_TIMEOUT)
        try:
            while not self._closing:
                self._wake.clear()
                more = await self._fan_out()
                room = _IN_FLIGHT - len(self._sending)
                if room > 0:
                    batch = await self._store.claim_deliveries(self._owner, self._lease, room)
                    for delivery in batch:
                        self._start(delivery)
                    more = more or len(batch) == room
                if more:
                    await asyncio.sleep(0)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
        finally:
            if self._sending:  # they use the client: let them end first (see close())
                await asyncio.wait(list(self._sending), timeout=SEND_TIMEOUT + 1)
            await self._http.aclose()

    async def close(self) -> None:
        """Claim nothing more and let the sends in flight finish (each within the send
        timeout), so that none is left half done."""
        self._closing = True
        self._wake.set()
        if self._sending:
            await asyncio.wait(list(self._sending), timeout=SEND_TIMEOUT + 1)

    async def trial(self, name: str) -> Outcome:
        """Send a test notification through the channel `name` now, outside the outbox;
        raise `UnknownChannel` when there is none."""
        channel = self._channels.get(name)
        if channel is None:
            raise UnknownChannel(name)
        notice = trial_notice(channel, dt.datetime.now(dt.UTC))
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as http:
            return await send(channel, notice, self._smtp, http)

    # -- told by the scheduler (a RunObserver) -----------------------------------------

    def run_started(self, started: RunStarted) -> None:
        """A start may have written a `started` event."""
        if any(NotifyEvent.STARTED in c.events for c in self._channels.values()):
            self._wake.set()

    def run_ended(self, ended: RunEnded) -> None:
        """A recorded end may have written events."""
        self._wake.set()

    def firings_missed(self, job: str, count: int) -> None:
        """Nothing to send until the firing is recorded (then `run_ended` says so)."""

    # -- the work ----------------------------------------------------------------------

    async def _fan_out(self) -> bool:
        """One delivery per new event and channel that wants it; whether more events may
        be waiting."""
        events = await self._store.undispatched_events(_FAN_OUT_BATCH)
        if not events:
            return False
        now = dt.datetime.now(dt.UTC)
        made = await self._store.dispatch_events([self._fan_out_of(e) for e in events], now)
        for delivery in made:
            if delivery.state is DeliveryState.SUPPRESSED:
                self._counted(delivery.channel, "suppressed")
        return len(events) == _FAN_OUT_BATCH

    def _fan_out_of(self, event: OutboxEvent) -> FanOut:
        chosen = tuple(
            ChannelQuota(channel.name, channel.max_per_hour)
            for channel in self._channels.values()
            if channel.wants(event.kind, event.job, event.repeat)
        )
        return FanOut(event.id, chosen)

    def _start(self, delivery: Delivery) -> None:
        lane = (delivery.channel, delivery.event.job)
        ahead = self._lanes.get(lane)
        task = asyncio.get_running_loop().create_task(self._deliver_after(ahead, delivery))
        self._lanes[lane] = task
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        task.add_done_callback(lambda done: self._leave_lane(lane, done))

    def _leave_lane(self, lane: tuple[str, str], done: asyncio.Task[None]) -> None:
        if self._lanes.get(lane) is done:
            del self._lanes[lane]

    async def _deliver_after(self, ahead: asyncio.Task[None] | None, delivery: Delivery) -> None:
        """Send `delivery` once the send ahead of it in its lane has ended (concurrent
        sends over separate connections would arrive in any order: a `started` after its
        `overdue`)."""
        if ahead is not None:
            await asyncio.wait([ahead])
        try:
            await self._deliver(delivery)
        except StoreUnavailable as error:
            log.warning(
                "notification %d (%s): its outcome could not be recorded (%s); it is "
                "sent again once its claim runs out",
                delivery.id,
                delivery.channel,
                error,
            )

    async def _deliver(self, delivery: Delivery) -> None:
        event = delivery.event
        channel = self._channels.get(delivery.channel)
        if channel is None:  # the configuration changed since the event was fanned out
            await self._settle(
                delivery,
                DeliveryState.FAILED,
                error=f'no channel "{delivery.channel}" in the configuration any more',
            )
            return
        output = await self._output_tail(event.run.id) if event.kind in _WITH_OUTPUT else b""
        assert self._http is not None
        notice = notice_for(delivery, channel, output, self._public_url, dt.datetime.now(dt.UTC))
        outcome = await send(channel, notice, self._smtp, self._http)
        if outcome.ok:
            self._counted(channel.name, "sent")  # (counted by the time it reads as sent)
            await self._settle(delivery, DeliveryState.SENT, outcome=outcome.detail)
            return
        delay = channel.retry_delay(delivery.attempts + 1)
        age = (dt.datetime.now(dt.UTC) - delivery.created_at).total_seconds()
        if age + delay > channel.give_up_after:
            self._counted(channel.name, "given_up")
            await self._settle(delivery, DeliveryState.FAILED, error=outcome.detail)
            self._complain(channel, delivery, outcome, gave_up=True)
            return
        self._counted(channel.name, "failed")
        await self._settle(delivery, DeliveryState.PENDING, error=outcome.detail, retry_in=delay)
        self._complain(channel, delivery, outcome, gave_up=False)
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _output_tail(self, run_id: int) -> bytes:
        """The last `TAIL_BYTES` of a run's stored output (each chunk holds a byte at
        least, so that many chunks from the tail's start hold all of it)."""
        start = await self._store.tail_start(run_id, TAIL_BYTES)
        chunks = await self._store.read_output(run_id, start - 1, TAIL_BYTES)
        return b"".join(chunk.data for chunk in chunks)[-TAIL_BYTES:]

    async def _settle(
        self,
        delivery: Delivery,
        state: DeliveryState,
        *,
        outcome: str | None = None,
        error: str | None = None,
        retry_in: float | None = None,
    ) -> None:
        settled = await self._store.settle_delivery(
            delivery.id, self._owner, state, outcome=outcome, error=error, retry_in=retry_in
        )
        if not settled:  # our lease ran out while sending: rare, and said once
            log.warning(
                "notification %d (%s): the send took longer than its %ss claim",
                delivery.id,
                delivery.channel,
                self._lease,
            )

    def _complain(
        self, channel: Channel, delivery: Delivery, outcome: Outcome, gave_up: bool
    ) -> None:
        """Log a failed delivery - once per channel per `COMPLAIN_EVERY`, not per attempt,
        with how many failed since the last line."""
        now = time.monotonic()
        logged_at, since = self._complaints.get(channel.name, (None, 0))
        if logged_at is not None and now - logged_at < COMPLAIN_EVERY:
            self._complaints[channel.name] = (logged_at, since + 1)
            return
        self._complaints[channel.name] = (now, 0)
        event = delivery.event
        what = "gave up on" if gave_up else "could not send"
        more = f" ({since} more failed attempts since the last report)" if since else ""
        log.error(
            'notify channel "%s": %s the %s notification of %s: %s%s; next report of '
            "this channel's failures in an hour at the earliest",
            channel.name,
            what,
            event.kind.value,
            event.job,
            outcome.detail,
            more,
            extra=about(job=event.job, run=event.run.id),
        )
