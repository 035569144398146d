"""Runs left `running` by a daemon process that died: mark them `lost`, end leftovers."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
from pathlib import Path

from evercron.daemon.state import owner_is_alive
from evercron.model import RunStatus
from evercron.process.procfs import read_stat, started_at_ticks
from evercron.store import RunEnd, Store

log = logging.getLogger("evercron.daemon")


async def recover_lost_runs(store: Store, state_dir: Path, node: str | None = None) -> list[int]:
    """Mark every running run of this node (`node`) whose owner is dead as lost and kill
    its leftover process group - only when the group leader's start time matches the
    recorded one, so a reused pid is never hit. Returns the ids marked lost. (Other
    nodes' runs are theirs: they end with their lease.)"""
    lost = []
    now = dt.datetime.now(dt.UTC)
    for running in await store.running(node=node):
        run, start_ticks = running.run, running.pid_start_ticks
        if run.owner is not None and owner_is_alive(state_dir, run.owner):
            continue
        killed = ""
        if run.pid is not None and start_ticks is not None:
            stat = read_stat(run.pid)
            if stat is not None and started_at_ticks(stat, start_ticks):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.pid, signal.SIGKILL)
                    killed = "; its leftover processes were killed"
        error = f"the daemon process that ran it ({run.owner}) died{killed}"
        await store.finish(run.id, RunEnd(RunStatus.LOST, now, error=error))
        log.warning("run %s of %s marked lost%s", run.id, run.job, killed)
        lost.append(run.id)
    return lost
