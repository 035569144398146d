"""The daemon's background chores: kill requests from other processes, retention, contract
migrations once alone, notifications sent, metric totals saved and merged. Each is a loop
that runs until cancelled, kept alive by `kept_alive`: a store that fails for a moment (a
lock held, a full disk, a database restart) pauses a chore, never ends it. (The overdue
watch needs none: it arms a timer per run.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from evercron.daemon import state
from evercron.logfields import about
from evercron.metrics import RunMetrics, Scraper
from evercron.notify.dispatcher import Dispatcher
from evercron.scheduler import Scheduler
from evercron.store import RetryPolicy, Store, StoreUnavailable

log = logging.getLogger("evercron.daemon")
KILL_REQUESTS_EVERY = 0.25
PRUNE_EVERY = 3600.0
CONTRACT_CHECK_EVERY = 1.0
FLUSH_EVERY = 5.0
"""Seconds between writes of the changed metric totals: a series that changes every
second is written once per period, not once per change (scrapes read this process's
values from memory; a handover and a stop write them at once)."""


RESTART_AFTER = 1.0
"""Seconds before a chore the store failed starts again."""
SAY_EVERY = 60.0
"""A chore's store failures are logged at most once per this many seconds."""


async def kept_alive(what: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the chore `start()` makes, and again `RESTART_AFTER` seconds after each
    failure: a store unavailable for a moment (said once a minute at most) or anything
    else (logged with its traceback), so that no chore silently stops for good."""
    said_at = -SAY_EVERY
    while True:
        try:
            await start()
            return
        except StoreUnavailable as error:
            if time.monotonic() - said_at >= SAY_EVERY:
                said_at = time.monotonic()
                log.warning("%s paused: %s; trying again every %gs", what, error, RESTART_AFTER)
        except Exception:
            log.exception("%s failed; started again in %gs", what, RESTART_AFTER)
        await asyncio.sleep(RESTART_AFTER)


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
