"""Benchmark: notifications and /metrics must not cost scheduling its precision.

1. notify: an idle daemon whose jobs fail every second, with a webhook channel
   (`every_run`) to a receiver on loopback: the time from each run's end (`finished_at`
   in the payload) to the webhook's arrival, p50/p99/max (goal: p99 under 1 s).
2. precision at N = 100 (every job every second, `date >> FILE; exit 1`): without
   channels; with a default channel (state changes: each job's first failure); with
   every failure notified (`every_run`, no hourly limit: 100 webhooks a second); and
   without channels while /metrics is scraped ten times a second. Firing latency as in
   bench/precision.py (written timestamp minus scheduled second): p50/p99/max, the
   median of --repeats runs.
3. scrape: /metrics with 1,000 jobs, each with its counters and both histograms filled
   (as after every job ran): the time of one scrape, p50/p99/max over 50 (goal: under
   100 ms), and of the first one, which writes every job's lines (later ones rewrite
   only the jobs whose values changed).

    .venv/bin/python bench/operations.py [--duration 20] [--repeats 3]
                                         [--skip notify,precision,scrape]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.notify.receivers import WebhookReceiver

from bench.precision import WARMUP, job_command, latencies, serving
from evercron.daemon.operations import node_name
from evercron.metrics.counts import DELAY_BUCKETS, DURATION_BUCKETS


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "- | - | -"
    p = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.99)]
    return f"{p[0]:.1f} | {p[1]:.1f} | {ordered[-1]:.1f}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def channel(url: str, every_run: bool = True) -> str:
    if not every_run:
        return f'[[notify]]\nname = "bench"\nurl = "{url}"\n'  # the defaults
    return (
        f'[[notify]]\nname = "bench"\nurl = "{url}"\nevery_run = true\n'
        f'max_per_hour = 1000000\non = ["failed"]\n'
    )


@contextlib.contextmanager
def daemon_with(work: Path, config: str) -> Iterator[tuple[str, str]]:
    """A daemon serving `config`: its URL and token."""
    path = work / "evercron.toml"
    path.write_text('[daemon]\nshutdown_grace = "5s"\n' + config)
    with serving(work, "--config", str(path)):
        address = json.loads((work / "state" / "daemon.json").read_text())
        yield address["url"], address["token"]


def notify_latency(jobs: int, duration: float) -> list[float]:
    """Milliseconds from each run's end to its webhook's arrival."""
    with WebhookReceiver() as receiver, tempfile.TemporaryDirectory() as folder:
        config = channel(receiver.url) + "".join(
            f'[[job]]\nname = "fail{i}"\nschedule = "* * * * * * *"\ncommand = "exit 1"\n'
            for i in range(jobs)
        )
        with daemon_with(Path(folder), config):
            time.sleep(WARMUP + duration)
        arrivals = []
        for request in receiver.requests:
            finished = dt.datetime.fromisoformat(request.json()["run"]["finished_at"])
            arrivals.append((request.at - finished.timestamp()) * 1000)
        return arrivals


def failed_ran(work: Path) -> dict[int, list[float]]:
    """Scheduled times of the firings that ran (and failed, as told), per job number."""
    ran: dict[int, list[float]] = {}
    with contextlib.closing(sqlite3.connect(work / "state" / "evercron.db")) as db:
        rows = db.execute(
            "SELECT job, scheduled_at FROM runs WHERE status = 'failed' AND trigger = 'schedule'"
        )
        for job, scheduled_at in rows:
            when = dt.datetime.fromisoformat(scheduled_at.replace("Z", "+00:00"))
            ran.setdefault(int(job.removeprefix("job")), []).append(when.timestamp())
    return ran


def precision(n: int, duration: float, mode: str) -> tuple[int, int, list[float], int]:
    """Firing latencies (ms) of N failing every-second jobs: mode is plain, changes,
    every or scrape. Also fired, expected, and the webhooks (or scrapes) done meanwhile."""
    with WebhookReceiver() as receiver, tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        fires = work / "fires"
        fires.mkdir()
        config = channel(receiver.url, mode == "every") if mode in ("changes", "every") else ""
        config += "".join(
            f'[[job]]\nname = "job{i}"\nschedule = "* * * * * * *"\nconcurrency = "allow"\n'
            f'command = "{job_command(fires, i)}; exit 1"\n'
            for i in range(n)
        )
        scrapes = 0
        with daemon_with(work, config) as (url, token):
            time.sleep(WARMUP)
            start = math.ceil(time.time())
            time.sleep(start - time.time())
            stop = threading.Event()

            def scrape_forever() -> None:
                nonlocal scrapes
                with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as http:
                    while not stop.wait(0.1):
                        http.get(f"{url}/metrics").raise_for_status()
                        scrapes += 1

            scraper = threading.Thread(target=scrape_forever)
            if mode == "scrape":
                scraper.start()
            time.sleep(duration)
            stop.set()
            if mode == "scrape":
                scraper.join()
            time.sleep(1.5)
        end = start + int(duration)
        found = latencies(fires, failed_ran(work), start, end)
        done = scrapes if mode == "scrape" else len(receiver.requests)
        return len(found), n * (end - start), found, done


def scrape_times(jobs: int, count: int) -> tuple[float, list[float]]:
    """Milliseconds per /metrics scrape with `jobs` jobs whose metrics are all filled:
    the first one, and `count` more."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        minute = (dt.datetime.now().minute + 30) % 60  # nothing fires meanwhile
        config = "".join(
            f'[[job]]\nname = "job{i}"\nschedule = "{minute} * * * *"\ncommand = "true"\n'
            for i in range(jobs)
        )
        with daemon_with(work, config) as (url, token):
            fill_totals(work / "state" / "evercron.db", jobs)
            times = []
            with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as http:
                began = time.perf_counter()
                http.get(f"{url}/metrics").raise_for_status()
                first = (time.perf_counter() - began) * 1000
                for _ in range(count):
                    began = time.perf_counter()
                    text = http.get(f"{url}/metrics").raise_for_status().text
                    times.append((time.perf_counter() - began) * 1000)
            assert text.count("evercron_run_duration_seconds_bucket") >= jobs * 16
            return first, times


def fill_totals(path: Path, jobs: int) -> None:
    """Totals as left by a process that ran every job: every bucket of both histograms."""
    rows = []
    for i in range(jobs):
        job = f"job{i}"
        rows += [(f"runs_total|{job}|{s}|schedule", 10.0) for s in ("succeeded", "failed")]
        rows += [(f"run_duration_seconds|{job}|{b}", 1.0) for b in range(len(DURATION_BUCKETS))]
        rows += [(f"run_start_delay_seconds|{job}|{b}", 1.0) for b in range(len(DELAY_BUCKETS))]
        rows += [(f"run_duration_seconds_sum|{job}", 12.5), (f"last_success|{job}", time.time())]
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.executemany(
            "INSERT INTO metric_totals (node, owner, series, kind, value) VALUES (?, '', ?, ?, ?)",
            [
                (node_name(), key, "max" if key.startswith("last_") else "sum", value)
                for key, value in rows
            ],
        )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--duration", type=float, default=20.0)
    options.add_argument("--repeats", type=int, default=3)
    options.add_argument("--skip", default="", help="notify, precision and/or scrape")
    args = options.parse_args()
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    print(
        f"# {dt.date.today()} {platform.machine()} {os.cpu_count()} cores, CPython "
        f"{platform.python_version()}; {args.duration:.0f}s per measure"
    )
    if "notify" not in skip:
        arrivals = notify_latency(2, args.duration)
        print("\n| run end -> webhook arrival | n | p50 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|---:|")
        print(f"| 2 failing jobs, every second | {len(arrivals)} | {percentiles(arrivals)} |")
    if "precision" not in skip:
        print(f"\n(median of {args.repeats} runs each)")
        print("\n| N = 100, every second | fired/expected | p50 ms | p99 ms | max ms | done |")
        print("|---|---:|---:|---:|---:|---:|")
        for mode, label in (
            ("plain", "no channel"),
            ("changes", "a default channel: state changes (webhooks sent)"),
            ("every", "every failure notified, no limit (webhooks sent)"),
            ("scrape", "/metrics scraped 10/s (scrapes)"),
        ):
            runs = [precision(100, args.duration, mode) for _ in range(args.repeats)]
            p50, p99, top = (
                statistics.median(_percentile(found, q) for _, _, found, _ in runs)
                for q in (0.5, 0.99, 1.0)
            )
            fired = statistics.median(r[0] for r in runs)
            done = statistics.median(r[3] for r in runs)
            print(
                f"| {label} | {fired:.0f}/{runs[0][1]} | {p50:.1f} | {p99:.1f} | {top:.1f} | "
                f"{done:.0f} |",
                flush=True,
            )
    if "scrape" not in skip:
        first, times = scrape_times(1000, 50)
        print("\n| /metrics, 1,000 jobs, every series filled | n | p50 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|---:|")
        print(f"| first scrape (every job's lines written) | 1 | {first:.1f} | - | - |")
        print(f"| scrape (HTTP request to full answer) | {len(times)} | {percentiles(times)} |")


if __name__ == "__main__":
    main()
