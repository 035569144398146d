"""Writes that must not be lost wait for the store instead of failing.

A claim or a run's result that the store refuses for a passing reason (a full disk, a
lock held by another process, a lost connection: `StoreUnavailable`) is tried again with
growing pauses until it is accepted. Nothing is dropped and nothing is decided twice: the
call is the same call. The trouble is logged when it starts, then at most once per
`log_every` seconds while it lasts, and once more when the store accepts writes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from evercron.store.records import StoreUnavailable

T = TypeVar("T")
log = logging.getLogger("evercron.store")

DEFAULT_RETRY_INTERVAL = 5.0
"""The longest pause between two tries of a refused write (`[daemon] store_retry_interval`)."""
_FIRST_PAUSE = 0.05


@dataclass
class RetryPolicy:
    """How refused writes are retried; shared by every caller of one daemon process so
    an outage is reported once, not once per waiting write."""

    max_interval: float = DEFAULT_RETRY_INTERVAL
    log_every: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failing_since: float | None = field(default=None, init=False)
    _logged_at: float = field(default=0.0, init=False)
    _waiting: int = field(default=0, init=False)

    @property
    def failing(self) -> bool:
        """Whether the store refuses writes right now (as far as the last try knows)."""
        return self._failing_since is not None

    def refused(self, what: str, error: StoreUnavailable) -> None:
        """Report a write the store refused (`what` it was): the outage is logged when
        it starts, then at most once per `log_every` seconds. For writers that retry in
        their own way; `persist` reports its own."""
        now = self.clock()
        if self._failing_since is None:
            self._failing_since = self._logged_at = now
            log.error("the store refuses writes (%s): %s; retrying until it accepts", what, error)
        elif now - self._logged_at >= self.log_every:
            self._logged_at = now
            log.error(
                "the store has refused writes for %.0fs (%d waiting): %s",
                now - self._failing_since,
                self._waiting,
                error,
            )

    def accepted(self) -> None:
        """Report a write the store accepted: the end of an outage is logged once
        nothing waits for the store any more."""
        if self._failing_since is not None and self._waiting == 0:
            log.warning(
                "the store accepts writes again after %.1fs", self.clock() - self._failing_since
            )
            self._failing_since = None


async def persist(
    policy: RetryPolicy,
    what: str,
    call: Callable[[], Awaitable[T]],
    give_up_after: float | None = None,
) -> T:
    """`await call()`, again and again while the store is unavailable, until it is
    accepted; its result. Other errors propagate at once. With `give_up_after` (for a
    request someone waits for) the last `StoreUnavailable` propagates after that many
    seconds instead."""
    pause = _FIRST_PAUSE
    began = policy.clock()
    policy._waiting += 1
    try:
        while True:
            try:
                result = await call()
            except StoreUnavailable as error:
                policy.refused(what, error)
                if give_up_after is not None and policy.clock() - began >= give_up_after:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, policy.max_interval)
                continue
            break
    finally:
        policy._waiting -= 1
    policy.accepted()
    return result
