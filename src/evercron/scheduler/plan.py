"""The next fire time of every scheduled job, earliest first: one heap, one timer.

Changing a job's entry does not search the heap: the old entry stays, marked stale by the
job's generation, and is dropped when it comes up. Taking the due entries is O(log n) per
firing whatever the number of jobs.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools


class Plan:
    """Each job's next fire time; `next_fires` is readable by anyone (the API, metrics)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, dt.datetime, int]] = []
        self._generation: dict[str, int] = {}
        self._numbers = itertools.count()
        self.next_fires: dict[str, dt.datetime] = {}
        """Each planned job's next fire time (aware, in the job's zone)."""

    def set(self, name: str, fire_at: dt.datetime | None) -> None:
        """Plan `name` to fire at `fire_at` next (None: not at all), replacing its entry."""
        generation = self._generation.get(name, 0) + 1
        self._generation[name] = generation
        if fire_at is None:
            self.next_fires.pop(name, None)
            return
        self.next_fires[name] = fire_at
        heapq.heappush(
            self._heap, (fire_at.timestamp(), next(self._numbers), name, fire_at, generation)
        )

    def earliest(self) -> float | None:
        """The earliest planned fire time (POSIX), or None when nothing is planned."""
        while self._heap:
            _, _, name, _, generation = self._heap[0]
            if self._generation.get(name) == generation:
                return self._heap[0][0]
            heapq.heappop(self._heap)
        return None

    def take_due(self, until: float) -> list[tuple[str, dt.datetime]]:
        """Remove and return the entries due at or before `until` (POSIX), earliest
        first; each job taken is unplanned until `set()` again."""
        due = []
        while (earliest := self.earliest()) is not None and earliest <= until:
            _, _, name, fire_at, _ = heapq.heappop(self._heap)
            self._generation[name] += 1
            self.next_fires.pop(name, None)
            due.append((name, fire_at))
        return due

    def names(self) -> list[str]:
        """The jobs planned now."""
        return list(self.next_fires)
