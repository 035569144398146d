"""A small thread-safe memo whose answers expire: for lookups that are the same for every
start within a moment but may change (a program installed, a directory moved)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MAX_ENTRIES = 4096


class ShortMemory(Generic[K, V]):
    """Remembers each key's answer for `ttl` seconds (at most 4096 keys at once)."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[K], V]) -> V:
        """The answer for `key`: remembered if computed less than `ttl` seconds ago, else
        `compute(key)` (called without the lock held)."""
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
        if found is not None and now - found[0] < self._ttl:
            return found[1]
        value = compute(key)
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now, value)
        return value
