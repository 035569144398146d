"""Runs left `running` by a daemon process that died: mark them `lost`, end leftovers.

Everything a lost run left running is killed - found by its cgroups, its process group
and the marks in its environment (see `evercron.process.leftovers`), never another
daemon's processes - and checked to be gone; the run's `error` and the log say what was
done, survivors included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from evercron.daemon.state import owner_is_alive
from evercron.logfields import about
from evercron.model import RunStatus
from evercron.process.leftovers import LostRun, end_lost_runs
from evercron.store import RunEnd, Store

log = logging.getLogger("evercron.daemon")


async def recover_lost_runs(store: Store, state_dir: Path, node: str | None = None) -> list[int]:
    """Mark every running run of this node (`node`) whose owner is dead as lost and end
    what it left running; returns the ids marked lost. (Other nodes' runs are theirs:
    they end with their lease.)"""
    lost = [
        running
        for running in await store.running(node=node)
        if running.run.owner is None or not owner_is_alive(state_dir, running.run.owner)
    ]
    if not lost:
        return []
    # Blocking work (a scan of /proc, waiting for the killed to be gone): off the loop.
    endings = await asyncio.to_thread(
        end_lost_runs,
        [
            LostRun(str(r.run.id), r.run.owner, r.run.pid, r.pid_start_ticks, r.cgroups)
            for r in lost
        ],
    )
    now = dt.datetime.now(dt.UTC)
    for running in lost:
        run = running.run
        done = endings[str(run.id)].describe()
        error = f"the daemon process that ran it ({run.owner}) died; {done}"
        await store.finish(run.id, RunEnd(RunStatus.LOST, now, error=error))
        log.warning(
            "run %s of %s marked lost; %s", run.id, run.job, done, extra=about(run.job, run.id)
        )
    return [running.run.id for running in lost]
