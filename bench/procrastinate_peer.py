"""The peer of bench/cluster.py: procrastinate's periodic tasks, N firings every second.

Each worker process imports this module (`--app=bench.procrastinate_peer.app`). Task `i`
runs every second (croniter's six-field cron, seconds last) and appends its name, the
second it was scheduled for and the time it started to the ledger, as evercron's jobs do.
"""

from __future__ import annotations

import os
import time

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("PEER_DATABASE_URL", ""))
)
LEDGER = os.environ.get("PEER_LEDGER", "/dev/null")


def _tick(name: str) -> procrastinate.tasks.Task:  # type: ignore[type-arg]
    @app.periodic(cron="* * * * * *", periodic_id=name)
    @app.task(name=name, queue="ticks")
    def tick(timestamp: int) -> None:
        started = time.time()
        with open(LEDGER, "a") as ledger:
            ledger.write(f"{name} {timestamp} {started:.6f} {os.getpid()}\n")

    return tick


TASKS = [_tick(f"tick-{n}") for n in range(int(os.environ.get("PEER_JOBS", "0")))]
