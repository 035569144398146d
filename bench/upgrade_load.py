"""Benchmark: hot upgrades of a real `evercron serve` under continuous load.

While the daemon serves, this process keeps it busy from 127.0.0.1 in two client modes at
once - a new connection per request (GET /api/v1/jobs) and a shared keep-alive pool
(GET /api/v1/status) - and upgrades it `--upgrades` times, each one 1 s after the
previous new process became ready. Around each upgrade a slow request is in flight (a
POST /api/v1/jobs whose body is sent over 2 s), and a live output follower reads a
talking job's output all the time, reconnecting with Last-Event-ID. An every-second job
runs throughout. (No peer scheduler upgrades in place, so the comparison is with the
goals: 0 failed requests, 0 missed or doubled firings, 0 leftovers, median handover
under 1.5 s.)

Reported: requests and failures by kind per client mode, latency p50/p99/max overall and
in the second after each upgrade, handover time (trigger to the new process serving, as
the old process measured it, and as the client waited), follower runs checked, firings
missed and doubled, leftover processes.

    .venv/bin/python bench/upgrade_load.py [--upgrades 20]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TALK_LINES = 30
TALK = f"for i in $(seq 1 {TALK_LINES}); do echo talk $i; sleep 0.05; done"
CONFIG = f"""
[[job]]
name = "tick"
schedule = "* * * * * * *"
command = "true"

[[job]]
name = "talk"
schedule = "@yearly"
command = "{TALK}"
concurrency = "allow"
"""


@dataclass
class Request:
    """One request's outcome."""

    mode: str
    started: float
    seconds: float
    failure: str | None


@dataclass
class Results:
    """Everything the load threads saw."""

    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    follower_runs: int = 0
    follower_errors: list[str] = field(default_factory=list)

    def add(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)


def timed(results: Results, mode: str, send: Callable[[], httpx.Response], ok: int) -> None:
    started = time.time()
    began = time.perf_counter()
    failure = None
    try:
        response = send()
        if response.status_code != ok:
            failure = f"HTTP {response.status_code}"
    except httpx.HTTPError as error:
        failure = type(error).__name__
    results.add(Request(mode, started, time.perf_counter() - began, failure))


def fresh_connections(url: str, headers: dict[str, str], results: Results, done: Any) -> None:
    while not done.is_set():
        timed(
            results, "new connection", lambda: httpx.get(f"{url}/api/v1/jobs", headers=headers), 200
        )


def keep_alive(client: httpx.Client, results: Results, done: Any) -> None:
    while not done.is_set():
        timed(results, "keep-alive", lambda: client.get("/api/v1/status"), 200)


def slow_request(url: str, headers: dict[str, str], results: Results, name: str) -> None:
    """A POST whose body takes 2 s to send: in flight while the upgrade happens."""
    body = json.dumps({"name": name, "schedule": "@yearly", "command": "true"}).encode()

    def trickle() -> Iterator[bytes]:
        for index in range(0, len(body), max(1, len(body) // 10)):
            yield body[index : index + max(1, len(body) // 10)]
            time.sleep(0.2)

    def send() -> httpx.Response:
        return httpx.post(
            f"{url}/api/v1/jobs",
            headers={
                **headers,
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
            },
            content=trickle(),
            timeout=60,
        )

    timed(results, "slow 2 s", send, 201)


def follow(url: str, headers: dict[str, str], results: Results, done: Any) -> None:
    """Trigger the talking job, follow its output to the end across handovers, check it."""
    expected = "".join(f"talk {i}\n" for i in range(1, TALK_LINES + 1))
    while not done.is_set():
        try:
            run_id = httpx.post(
                f"{url}/api/v1/jobs/talk/trigger", headers=headers, timeout=30
            ).json()["id"]
        except (httpx.HTTPError, KeyError, ValueError) as error:
            results.follower_errors.append(f"trigger: {error}")
            time.sleep(0.2)
            continue
        text, offsets, ended, last = "", [], False, None
        for _ in range(100):
            sent = dict(headers)
            if last is not None:
                sent["Last-Event-ID"] = last
            try:
                with httpx.stream(
                    "GET", f"{url}/api/v1/runs/{run_id}/output?follow=1", headers=sent, timeout=60
                ) as response:
                    kind, data = "", []
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            last = line[4:]
                        elif line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            data.append(line[6:])
                        elif not line and kind:
                            if kind == "stdout":  # data: {"offset": N, "text": "..."}
                                chunk = json.loads("\n".join(data))
                                offsets.append(chunk["offset"])
                                text += chunk["text"]
                            ended = kind == "end"
                            kind, data = "", []
            except httpx.HTTPError:
                pass
            if ended:
                break
            time.sleep(0.05)
        results.follower_runs += 1
        if offsets != sorted(set(offsets)):
            results.follower_errors.append(f"run {run_id}: a chunk twice or out of order")
        if text != expected or not ended:
            results.follower_errors.append(f"run {run_id}: output differs or no end")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def leftovers(marker: str) -> list[str]:
    """Processes whose command line mentions this benchmark's directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry.name} {cmdline[:120]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upgrades", type=int, default=20)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="evercron-upgrade-bench-"))
    (work / "evercron.toml").write_text(CONFIG)
    log_path = work / "daemon.log"
    state = work / "state"
    with open(log_path, "w") as log:
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evercron",
                "serve",
                "--config",
                str(work / "evercron.toml"),
                "--state-dir",
                str(state),
                "--listen",
                "127.0.0.1:0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "listening on" not in log_path.read_text():
        if time.monotonic() > deadline or first.poll() is not None:
            sys.exit(f"daemon did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    address = json.loads((state / "daemon.json").read_text())
    url, headers = address["url"], {"Authorization": f"Bearer {address['token']}"}
    results = Results()
    done = threading.Event()
    pool = httpx.Client(base_url=url, headers=headers, limits=httpx.Limits(max_connections=4))
    threads = [
        *(
            threading.Thread(target=fresh_connections, args=(url, headers, results, done))
            for _ in range(2)
        ),
        *(threading.Thread(target=keep_alive, args=(pool, results, done)) for _ in range(2)),
        threading.Thread(target=follow, args=(url, headers, results, done)),
    ]
    for thread in threads:
        thread.start()
    time.sleep(2)
    began = time.time()
    handovers: list[float] = []
    waits: list[float] = []
    ready_at: list[float] = []
    upgrade_failures: list[str] = []
    pids = [first.pid]
    slow: list[threading.Thread] = []
    for number in range(options.upgrades):
        request = threading.Thread(
            target=slow_request, args=(url, headers, results, f"slow-{number}")
        )
        request.start()
        slow.append(request)
        time.sleep(0.5)  # the slow request is well under way
        sent = time.perf_counter()
        try:
            answer = httpx.post(f"{url}/api/v1/upgrade", headers=headers, timeout=120)
        except httpx.HTTPError as error:
            upgrade_failures.append(type(error).__name__)
            continue
        if answer.status_code != 200:
            upgrade_failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
            continue
        waits.append(time.perf_counter() - sent)
        ready_at.append(time.time())
        handovers.append(answer.json()["handover_seconds"])
        pids.append(answer.json()["pid"])
        print(f"upgrade {number + 1}: pid {pids[-1]} serves after {handovers[-1]:.2f}s", flush=True)
        time.sleep(1.0)
    for request in slow:
        request.join(60)
    time.sleep(1.5)
    done.set()
    for thread in threads:
        thread.join(60)
    pool.close()
    ended = time.time()
    runs = httpx.get(
        f"{url}/api/v1/runs", params={"job": "tick", "limit": 1000}, headers=headers, timeout=60
    ).json()
    per_second = collections.Counter(
        int(dt.datetime.fromisoformat(r["scheduled_at"].replace("Z", "+00:00")).timestamp())
        for r in runs
    )
    window = range(int(began) + 1, int(ended) - 1)
    missed = [s for s in window if per_second[s] == 0]
    doubled = [s for s in window if per_second[s] > 1]
    serving = int(json.loads((state / "daemon.json").read_text())["pid"])
    os.kill(serving, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while leftovers(str(work)) and time.monotonic() < deadline:
        time.sleep(0.1)
    first.wait(10)
    left = leftovers(str(work))

    print(
        f"\n# {dt.date.today()} {platform.machine()} {os.cpu_count()} cores, "
        f"CPython {platform.python_version()}; {options.upgrades} upgrades"
    )
    print(
        "| client mode | requests | failed | failures by kind | p50 ms | p99 ms | max ms "
        "| p99 ms in the s after an upgrade | max ms in that s |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for mode in ("new connection", "keep-alive", "slow 2 s"):
        rows = [r for r in results.requests if r.mode == mode]
        after = [r for r in rows if any(t <= r.started < t + 1 for t in ready_at)]
        kinds = collections.Counter(r.failure for r in rows if r.failure)
        latencies = [r.seconds * 1000 for r in rows]
        after_ms = [r.seconds * 1000 for r in after]
        print(
            f"| {mode} | {len(rows)} | {sum(kinds.values())} | {dict(kinds) or '-'} | "
            f"{percentile(latencies, 50):.1f} | {percentile(latencies, 99):.1f} | "
            f"{max(latencies, default=0):.1f} | "
            f"{percentile(after_ms, 99):.1f} | {max(after_ms, default=0):.1f} |"
        )
    print(f"\nupgrades: {len(handovers)}/{options.upgrades} succeeded {upgrade_failures or ''}")
    print(
        "handover (spawn to serving, old process's clock): median "
        f"{statistics.median(handovers):.2f}s, max {max(handovers):.2f}s; "
        f"client wait median {statistics.median(waits):.2f}s"
    )
    print(
        f"follower: {results.follower_runs} runs followed to the end, "
        f"errors {results.follower_errors or 0}"
    )
    print(
        f"every-second job: {len(window)} seconds checked, missed {len(missed)} {missed[:10]}, "
        f"doubled {len(doubled)} {doubled[:10]}"
    )
    print(f"leftover processes: {len(left)} {left[:5]}")


def cleanup(work: Path) -> None:
    """Kill whatever this benchmark left (after a failure)."""
    for line in leftovers(str(work)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


if __name__ == "__main__":
    try:
        main()
    finally:
        for path in Path(tempfile.gettempdir()).glob("evercron-upgrade-bench-*"):
            cleanup(path)
            shutil.rmtree(path, ignore_errors=True)
