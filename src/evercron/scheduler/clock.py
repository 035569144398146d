"""Time as the scheduler and the launcher see it: injected, so tests move it by hand.

`SystemClock` is the real one. Its precise instants (`at`) are kept by one thread of its
own that sleeps until each instant and runs the action there: releasing a second's held
firings is one `write()` that must happen on the instant, whatever the event loop is busy
with, and the loop itself never sleeps. `ManualClock` is the tests' clock: its time moves
only when `advance()` or `step()` is called, and everything waiting on it wakes then.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

Action = Callable[[], None]


class Clock(Protocol):
    """Wall time (for fire times), monotonic time (for durations), and ways to wait."""

    def time(self) -> float:
        """The wall clock: POSIX seconds."""
        ...

    def monotonic(self) -> float:
        """A clock that never steps, for measuring intervals."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (monotonic)."""
        ...

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait until `event` is set (True) or `seconds` passed (False)."""
        ...

    def at(self, when: float, action: Action) -> None:
        """Run `action` at wall time `when`, as precisely as the machine allows. It may run
        on another thread: it must be safe there (a write, `call_soon_threadsafe`)."""
        ...


class SystemClock:
    """The machine's clocks; precise instants on a thread of their own."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Action]] = []
        self._numbers = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def time(self) -> float:
        """`time.time()`."""
        return time.time()

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep`."""
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """`event.wait()` with a timeout."""
        if event.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, seconds))
            return True
        return False

    def at(self, when: float, action: Action) -> None:
        """Run `action` on the instants thread at `when` (at once if it has passed)."""
        with self._changed:
            heapq.heappush(self._due, (when, next(self._numbers), action))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._keep_instants, name="evercron-instants", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _keep_instants(self) -> None:
        while True:
            with self._changed:
                while not self._due:
                    self._changed.wait()
                when = self._due[0][0]
                early = when - time.time()
                if early > 0.002:
                    # Sleep short of the instant (a new, earlier instant wakes us), then
                    # the last couple of milliseconds precisely, outside the lock.
                    self._changed.wait(early - 0.002)
                    continue
            if early > 0:
                time.sleep(early)
            with self._changed:
                _, _, action = heapq.heappop(self._due)
            action()


class ManualClock:
    """A clock for tests: time stands still until moved. `advance()` moves both clocks
    (time passing); `step()` moves only the wall clock (an NTP step)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = start
        self._mono = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._instants: list[tuple[float, int, Action]] = []
        self._numbers = itertools.count()

    def time(self) -> float:
        """The wall clock as last moved."""
        return self._wall

    def monotonic(self) -> float:
        """The monotonic clock as last moved."""
        return self._mono

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock was advanced by `seconds`."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._numbers), future))
        await future

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait for `event`, or until the clock was advanced by `seconds`."""
        if event.is_set():
            return True
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        sleeper.cancel()
        return event.is_set()

    def at(self, when: float, action: Action) -> None:
        """Run `action` once the wall clock reaches `when`."""
        heapq.heappush(self._instants, (when, next(self._numbers), action))
        self._fire_instants()

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass on both clocks, waking everything due, in time order; the
        event loop runs between wake-ups so the woken tasks act before the next."""
        target = self._mono + seconds
        while True:
            await _settle()
            next_wake = self._sleepers[0][0] if self._sleepers else target
            step = min(next_wake, target) - self._mono
            self._mono += step
            self._wall += step
            self._fire_instants()
            while self._sleepers and self._sleepers[0][0] <= self._mono:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            if self._mono >= target and not (self._sleepers and self._sleepers[0][0] <= target):
                await _settle()
                return

    async def jump(self, seconds: float) -> None:
        """Let `seconds` pass on both clocks at once, as for a process that was stopped
        (SIGSTOP) or starved: nothing runs in between, then everything due wakes."""
        self._mono += seconds
        self._wall += seconds
        await self.advance(0)

    def step(self, seconds: float) -> None:
        """Move the wall clock alone by `seconds` (either way), as an NTP step does."""
        self._wall += seconds
        self._fire_instants()

    def _fire_instants(self) -> None:
        while self._instants and self._instants[0][0] <= self._wall:
            _, _, action = heapq.heappop(self._instants)
            action()


async def _settle() -> None:
    """Let the event loop run what is ready (a few rounds: woken tasks wake others)."""
    for _ in range(20):
        await asyncio.sleep(0)
