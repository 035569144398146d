"""The daemon's background chores: kill requests from other processes, retention, and
contract migrations once alone. Each is a loop that runs until cancelled."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from evercron.daemon import state
from evercron.logfields import about
from evercron.scheduler import Scheduler
from evercron.store import Store

log = logging.getLogger("evercron.daemon")
KILL_REQUESTS_EVERY = 0.25
PRUNE_EVERY = 3600.0
CONTRACT_CHECK_EVERY = 1.0


async def serve_kill_requests(store: Store, scheduler: Scheduler, owner: str) -> None:
    """Kill runs of this process that another process (e.g. the successor, or a
    `replace` firing) asked to end through the store."""
    done: set[int] = set()
    while True:
        await asyncio.sleep(KILL_REQUESTS_EVERY)
        if not scheduler.launcher.running:
            done.clear()
            continue
        for run_id in await store.kill_requests(owner):
            if run_id not in done and scheduler.launcher.kill(run_id):
                log.info(
                    "run %d: killed as asked through another process",
                    run_id,
                    extra=about(run=run_id),
                )
                done.add(run_id)


async def prune_forever(store: Store, keep_runs: int, keep_days: float) -> None:
    """Apply the retention settings now and every hour."""
    while True:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days)
        removed = await store.prune(keep_runs, cutoff)
        if removed:
            log.info("retention: removed %d old run(s) and their output", removed)
        await asyncio.sleep(PRUNE_EVERY)


async def contract_when_alone(store: Store, state_dir: Path, owner: str) -> None:
    """Apply contract migrations once no older generation uses the store."""
    while set(await asyncio.to_thread(state.living_generations, state_dir)) - {owner}:
        await asyncio.sleep(CONTRACT_CHECK_EVERY)
    await store.migrate()
