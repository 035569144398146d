"""The daemon's background chores: kill requests from other processes, retention, contract
migrations once alone, notifications sent, metric totals saved and merged. Each is a loop
that runs until cancelled. (The overdue watch needs none: it arms a timer per run.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from evercron.daemon import state
from evercron.logfields import about
from evercron.metrics import RunMetrics, Scraper
from evercron.notify.dispatcher import Dispatcher
from evercron.scheduler import Scheduler
from evercron.store import RetryPolicy, Store

log = logging.getLogger("evercron.daemon")
KILL_REQUESTS_EVERY = 0.25
PRUNE_EVERY = 3600.0
CONTRACT_CHECK_EVERY = 1.0
FLUSH_EVERY = 5.0
"""Seconds between writes of the changed metric totals: a series that changes every
second is written once per period, not once per change (scrapes read this process's
values from memory; a handover and a stop write them at once)."""


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
    """Apply the retention settings now and every hour (to notifications: settled ones
    older than `keep_days` go)."""
    while True:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days)
        removed = await store.prune(keep_runs, cutoff)
        if removed:
            log.info("retention: removed %d old run(s) and their output", removed)
        await store.prune_notifications(cutoff)
        await asyncio.sleep(PRUNE_EVERY)


async def contract_when_alone(store: Store, state_dir: Path, owner: str) -> None:
    """Apply contract migrations once no older generation uses the store."""
    while set(await asyncio.to_thread(state.living_generations, state_dir)) - {owner}:
        await asyncio.sleep(CONTRACT_CHECK_EVERY)
    await store.migrate()


async def deliver_notifications(dispatcher: Dispatcher) -> None:
    """Send the outbox's notifications (see `Dispatcher.run`)."""
    await dispatcher.run()


async def save_metrics(counts: RunMetrics, store: Store, retry: RetryPolicy) -> None:
    """Write this process's changed metric totals every `FLUSH_EVERY` seconds."""
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        await counts.flush(store, retry)


async def merge_metric_totals(scraper: Scraper, state_dir: Path, owner: str) -> None:
    """Merge the metric totals of this node's daemon processes that are gone (so that a
    scrape reads few rows): whenever this process is the only one alive - at start, once
    an upgrade's old generation has exited - and every hour after."""
    while True:
        living = set(await asyncio.to_thread(state.living_generations, state_dir)) | {owner}
        if len(living) > 1:
            await asyncio.sleep(CONTRACT_CHECK_EVERY)
            continue
        await scraper.compact(living)
        await asyncio.sleep(PRUNE_EVERY)
