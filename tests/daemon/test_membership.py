"""The membership loop's background steps: one of a kind at a time, nothing left over."""

from __future__ import annotations

import asyncio
import gc
import warnings
from pathlib import Path

from evercron.daemon.membership import Membership
from evercron.scheduler.placement import Cluster
from evercron.store import NodeInfo
from evercron.store.sqlite import SqliteStore


def test_a_step_still_running_makes_no_second_one(tmp_path: Path) -> None:
    """A step due while its last one still runs is not made at all: before, its
    coroutine was made and dropped, and Python warned it was never awaited."""
    asyncio.run(_two_steps_due(tmp_path))


async def _two_steps_due(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "evercron.db")
    info = NodeInfo("a", "h", "o", (), "1", 1, 30.0)
    membership = Membership(store, info, Cluster(info, lambda: 0.0))
    release = asyncio.Event()
    made: list[int] = []

    async def step(n: int) -> None:
        made.append(n)
        await release.wait()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        membership._start("renew", lambda: step(1))
        await asyncio.sleep(0)
        membership._start("renew", lambda: step(2))  # the first still runs
        release.set()
        await asyncio.sleep(0.01)
        membership._start("renew", lambda: step(3))  # the first has ended
        await asyncio.sleep(0.01)
        gc.collect()
    assert made == [1, 3]
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    await store.close()
