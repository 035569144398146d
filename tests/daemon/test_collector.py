"""The daemon's garbage-collection settings: rare young collections, startup objects
frozen, and reference cycles still reclaimed (checked in a fresh interpreter, so this
test process keeps its own settings)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from evercron.daemon.collector import YOUNG_THRESHOLD, settle_after_startup

    loaded = [{"job": i} for i in range(1000)]
    settle_after_startup()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_threshold()
    assert gc.get_freeze_count() >= len(loaded), gc.get_freeze_count()

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    first = cycle()
    young = [cycle() for _ in range(10)]
    assert first() is not None  # not collected yet: collections are rare now
    for _ in range(YOUNG_THRESHOLD):  # enough new containers to trigger one by itself
        cycle()
    assert first() is None and all(ref() is None for ref in young)
    print("ok")
    """
)


def test_settled_collector_is_rare_but_still_reclaims_cycles() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
