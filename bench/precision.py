"""Benchmark: firing precision of evercron beside APScheduler 3 and the machine's floor.

For N jobs firing every second (N = 1, 100, 1000), each running `date +%s.%N >> FILE`:

- evercron: a real `evercron serve` with the N jobs in a crontab (`concurrency = allow`);
- APScheduler 3: a BackgroundScheduler in this process, CronTrigger(second="*"), the same
  command through subprocess.run (a thread pool as large as N, capped at 200);
- the floor: N `sh -c 'read _; date ...'` processes prepared in advance and released at
  the same instant, every second - their own start-up cost on the available cores is the
  limit no scheduler can beat.

Reported per N (median of --repeats runs): fired/expected, latency (written timestamp
minus its scheduled second) p50/p99/max in ms, scheduler CPU % and RSS. Then the idle
cost of 10,000 hourly jobs loaded in evercron (CPU % over --idle seconds, RSS).

Each job appends to a file of its own, and every method tells which seconds it ran each
job for (evercron: its run records; APScheduler: its executed-job events; the floor: the
seconds it released). A job's firings write in the order they were scheduled, so its
k-th line belongs to its k-th firing: the latency is exact even when a method falls
seconds behind (reading only the fraction of the written second would wrap at 1 s).
A firing counts as fired when it was scheduled in the measured window and wrote within
1.5 s after the window's end (when the schedulers are stopped).

    .venv/bin/python bench/precision.py [--duration 20] [--repeats 3] [--sizes 1,100,1000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any

METHOD_NAMES = ("evercron", "APScheduler 3", "floor")
WARMUP = 3.0  # seconds before measuring: the daemon loads, plans and starts firing
DRAIN = 1.5  # seconds after the window for its last firings to write; then stopped


@dataclass
class Sample:
    """One measured run of one method at one N."""

    fired: int
    expected: int
    latencies_ms: list[float]
    cpu_percent: float
    rss_mb: float

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def job_command(fires: Path, job: int) -> str:
    """The command every method runs for job number `job`."""
    return f"date +%s.%N >> {fires / f'job{job}'}"


def latencies(fires: Path, ran: dict[int, list[float]], start: int, end: int) -> list[float]:
    """Latency (ms) of every firing scheduled in [start, end) that wrote its line by
    `end + DRAIN`; `ran` maps each job to the scheduled times (POSIX) of the firings
    that ran."""
    found = []
    for job, scheduled in ran.items():
        path = fires / f"job{job}"
        written = sorted(float(x) for x in path.read_text().split()) if path.exists() else []
        # One line per firing that ran, in order; a line short means a firing ended (was
        # stopped) before writing: those are the last ones, so pair from the first.
        for at, stamp in zip(sorted(scheduled), written, strict=False):
            if start <= at < end and stamp <= end + DRAIN:
                found.append((stamp - at) * 1000)
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def measure(found: list[float], n: int, start: int, end: int, cpu: float, rss: float) -> Sample:
    return Sample(len(found), n * (end - start), found, cpu, rss)


def run_evercron(n: int, duration: float, work: Path) -> Sample:
    fires = work / "fires"
    fires.mkdir()
    config = work / "evercron.toml"
    config.write_text(
        '[daemon]\nshutdown_grace = "5s"\n'
        + "".join(
            f'[[job]]\nname = "job{i}"\nschedule = "* * * * * * *"\nconcurrency = "allow"\n'
            f'command = "{job_command(fires, i)}"\n'
            for i in range(n)
        )
    )
    with serving(work, "--config", str(config)) as daemon:
        time.sleep(WARMUP)
        start = math.ceil(time.time())
        time.sleep(start - time.time())
        cpu_before = cpu_seconds(daemon.pid)
        time.sleep(duration)
        end = start + int(duration)
        cpu = (cpu_seconds(daemon.pid) - cpu_before) / duration * 100
        rss = rss_mb(daemon.pid)
        time.sleep(DRAIN)  # let the last second's firings write
    return measure(latencies(fires, evercron_ran(work), start, end), n, start, end, cpu, rss)


def evercron_ran(work: Path) -> dict[int, list[float]]:
    """Scheduled times of the firings evercron ran to the end, per job number."""
    ran: dict[int, list[float]] = {}
    with contextlib.closing(sqlite3.connect(work / "state" / "evercron.db")) as db:
        rows = db.execute(
            "SELECT job, scheduled_at FROM runs WHERE status = 'succeeded' AND trigger = 'schedule'"
        )
        for job, scheduled_at in rows:
            when = dt.datetime.fromisoformat(scheduled_at.replace("Z", "+00:00"))
            ran.setdefault(int(job.removeprefix("job")), []).append(when.timestamp())
    return ran


@contextlib.contextmanager
def serving(work: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """An `evercron serve` on `work/state`, ready to fire; stopped (SIGTERM) at the end."""
    log_path = work / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evercron",
                "serve",
                "--state-dir",
                str(work / "state"),
                "--listen",
                "127.0.0.1:0",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(lambda: _listening(daemon, log_path), 300)
            yield daemon
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(120)
            except subprocess.TimeoutExpired:
                daemon.kill()  # report what was measured; a stuck stop shows in its log
                daemon.wait()


def run_apscheduler(n: int, duration: float, work: Path) -> Sample:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED  # noqa: PLC0415
    from apscheduler.executors.pool import ThreadPoolExecutor  # noqa: PLC0415
    from apscheduler.schedulers.background import BackgroundScheduler  # noqa: PLC0415
    from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415

    fires = work / "fires"
    fires.mkdir()
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(min(max(n, 10), 200))},
        job_defaults={"coalesce": False, "max_instances": 10, "misfire_grace_time": 30},
    )
    ran: dict[int, list[float]] = {}

    def executed(event: Any) -> None:  # on the scheduler's threads: list.append is atomic
        ran[int(event.job_id.removeprefix("job"))].append(event.scheduled_run_time.timestamp())

    scheduler.add_listener(executed, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    for i in range(n):
        ran[i] = []
        command = ["/bin/sh", "-c", job_command(fires, i)]
        scheduler.add_job(subprocess.run, CronTrigger(second="*"), args=[command], id=f"job{i}")
    scheduler.start()
    try:
        time.sleep(WARMUP)
        start = math.ceil(time.time())
        time.sleep(start - time.time())
        cpu_before = sum(os.times()[:2])
        time.sleep(duration)
        end = start + int(duration)
        cpu = (sum(os.times()[:2]) - cpu_before) / duration * 100
        rss = rss_mb(os.getpid())
        time.sleep(DRAIN)
    finally:
        scheduler.shutdown(wait=True)
    return measure(latencies(fires, ran, start, end), n, start, end, cpu, rss)


def run_floor(n: int, duration: float, work: Path) -> Sample:
    fires = work / "fires"
    fires.mkdir()
    start = math.ceil(time.time()) + 2
    end = start + int(duration)
    cpu_total = 0.0
    released: list[float] = []
    for second in range(start, end):
        ready = [
            subprocess.Popen(["/bin/sh", "-c", f"read _; {job_command(fires, i)}"], stdin=PIPE)
            for i in range(n)
        ]
        time.sleep(max(0.0, second - time.time()))  # when behind: released late
        released.append(second)
        before = sum(os.times()[:2])
        for process in ready:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            process.stdin.flush()
        cpu_total += sum(os.times()[:2]) - before
        for process in ready:
            assert process.stdin is not None
            process.stdin.close()
            process.wait()
    return measure(
        latencies(fires, dict.fromkeys(range(n), released), start, end),
        n,
        start,
        end,
        cpu_total / duration * 100,
        rss_mb(os.getpid()),
    )


def _listening(daemon: subprocess.Popen[bytes], log_path: Path) -> bool:
    """Whether the daemon says it listens; an exit before that ends the benchmark with its
    log rather than a wait for the timeout."""
    if "listening on" in log_path.read_text():
        return True
    if daemon.poll() is not None:
        raise RuntimeError(f"the daemon exited ({daemon.returncode}):\n{log_path.read_text()}")
    return False


def _wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError("the daemon did not start")


def idle_cost(jobs: int, seconds: float) -> tuple[float, float]:
    """CPU % and RSS (MB) of evercron with `jobs` hourly jobs loaded and nothing firing."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        crontab = work / "idle.crontab"
        minute = (dt.datetime.now().minute + 30) % 60  # far from now: nothing fires
        crontab.write_text(
            "".join(f"# name: idle{i}\n{minute} * * * * true\n" for i in range(jobs))
        )
        with serving(work, "--crontab", str(crontab)) as daemon:
            time.sleep(3)
            before = cpu_seconds(daemon.pid)
            time.sleep(seconds)
            cpu = (cpu_seconds(daemon.pid) - before) / seconds * 100
            return cpu, rss_mb(daemon.pid)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--duration", type=float, default=20.0)
    options.add_argument("--repeats", type=int, default=3)
    options.add_argument("--sizes", default="1,100,1000")
    options.add_argument("--idle-jobs", type=int, default=10_000)
    options.add_argument("--idle", type=float, default=30.0, help="seconds; 0 skips it")
    options.add_argument(
        "--methods", default="evercron,apscheduler,floor", help="which to run (for profiling)"
    )
    args = options.parse_args()
    if args.idle < 0 or args.duration < 1 or args.repeats < 1:
        options.error("--idle must be 0 or more, --duration at least 1, --repeats at least 1")
    print(
        f"# {dt.date.today()} {platform.machine()} {os.cpu_count()} cores, CPython "
        f"{platform.python_version()}; {args.duration:.0f}s per run, median of "
        f"{args.repeats}"
    )
    print("| N | method | fired/expected | p50 ms | p99 ms | max ms | CPU % | RSS MB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    methods = {"evercron": run_evercron, "APScheduler 3": run_apscheduler, "floor": run_floor}
    chosen = {x.strip().lower() for x in args.methods.split(",")}
    unknown = chosen - {"evercron", "apscheduler", "floor"}
    if unknown:
        options.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    methods = {k: v for k, v in methods.items() if k.split()[0].lower() in chosen}
    for n in (int(x) for x in args.sizes.split(",")):
        p99s: dict[str, float] = {}
        for name, method in methods.items():
            samples = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as folder:
                    samples.append(method(n, args.duration, Path(folder)))
            med = statistics.median
            p99s[name] = med(s.percentile(99) for s in samples)
            print(
                f"| {n} | {name} | {med(s.fired for s in samples):.0f}/"
                f"{med(s.expected for s in samples):.0f} | "
                f"{med(s.percentile(50) for s in samples):.1f} | {p99s[name]:.1f} | "
                f"{med(max(s.latencies_ms, default=math.nan) for s in samples):.1f} | "
                f"{med(s.cpu_percent for s in samples):.1f} | "
                f"{med(s.rss_mb for s in samples):.0f} |",
                flush=True,
            )
        if len(p99s) < len(METHOD_NAMES):
            continue
        print(
            f"| {n} | ratios | evercron p99 / floor p99 = "
            f"{p99s['evercron'] / p99s['floor']:.2f}; APScheduler p99 / evercron p99 = "
            f"{p99s['APScheduler 3'] / p99s['evercron']:.2f} | | | | | |",
            flush=True,
        )
    if args.idle == 0:
        return
    cpu, rss = idle_cost(args.idle_jobs, args.idle)
    print(
        f"\nidle: {args.idle_jobs} hourly jobs loaded: {cpu:.2f}% CPU over {args.idle:.0f}s, "
        f"{rss:.0f} MB RSS"
    )


if __name__ == "__main__":
    main()
