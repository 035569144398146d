"""Garbage collection settled for a daemon that starts thousands of processes a minute.

CPython's default young-generation threshold (700 new containers) makes the collector run
every few dozen firings. Each run's objects (its task, futures, pipes, records) live for
the run's whole length, so they are caught alive, promoted, and traversed again by the
older generations: at a thousand firings a second that cost a third of the event loop,
in pauses of up to a third of a second. Nearly all of them are freed by reference
counting when the run ends, so collections can be far rarer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Net new container objects between two young collections (CPython's default: 700)."""


def settle_after_startup() -> None:
    """Call once the daemon has loaded: what it loaded (modules, the app, the jobs) is
    moved out of every later collection, and young collections become rare (see
    `YOUNG_THRESHOLD`). Cycles are still collected, only less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
