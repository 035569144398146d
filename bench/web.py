"""Benchmark: the web page with a thousand jobs and a 50 MB output.

A real `evercron serve` runs on a temporary state dir: 1,000 jobs from a config file, each
with 20 finished runs in the store (written before the daemon starts, as a long history
would be; every fifth one failed), and one run of one more job whose stored output is
50 MB (64 KiB chunks, as the daemon stores a fast writer's pipe reads, every tenth on
stderr). Debian's Chromium (headless, through Playwright) then opens, `--repeat` times,
each in a fresh tab signed in by the `#token=` link:

- jobs: `/` until every row is drawn and the rows in view show their 20 status marks
  (rows out of view are not rendered and draw their strips as they come near), then a
  jump to the end of the list until the last row's marks are drawn, then a keystroke in
  the filter until the rows are narrowed (this includes the filter's 120 ms pause);
- tail: `/runs/{id}` of the 50 MB run until the output's last line is shown.

Times are from the navigation's start, read in the page (performance.now()). The first
visit after the daemon started is shown apart (its caches are cold); the goals are read
against the median of the others: an interactive jobs page under 1 s, the tail of a 50 MB
output under 2 s.

    .venv/bin/python bench/web.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from evercron.model import RunStatus, Trigger
from evercron.store import Claim, RunEnd, StoredChunk
from evercron.store.sqlite import SqliteStore

JOBS = 1000
RUNS_PER_JOB = 20
BIG_BYTES = 50 * 1000 * 1000
CHUNK = 64 * 1024
LINE = 100
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evercron-bench-web-") as folder:
        state = Path(folder) / "state"
        config = Path(folder) / "evercron.toml"
        config.write_text(_config())
        run_id, last_line = _fill_store(state)
        with _daemon(state, config) as (url, token), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            jobs = [_jobs_page(browser, url, token) for _ in range(options.repeat)]
            tails = [_tail(browser, url, token, run_id, last_line) for _ in range(options.repeat)]
            version = browser.version
            browser.close()
    print(
        f"# {dt.date.today()} {platform.machine()} {os.cpu_count()} cores, "
        f"CPython {platform.python_version()}, Chromium {version}; {options.repeat} runs"
    )
    _report("jobs page interactive (1,000 rows)", [drawn for drawn, _, _ in jobs], 1000)
    _report("jump to the end, its marks drawn", [end for _, end, _ in jobs], None)
    _report("filter keystroke to narrowed rows", [narrowed for _, _, narrowed in jobs], None)
    _report("tail of a 50 MB output shown", tails, 2000)


def _jobs() -> list[tuple[str, str, str]]:
    """Name, schedule and command of each job (the last one has the big run)."""
    return [(f"job-{n:04d}", f"{n % 60} {n % 24} * * *", f"echo job {n}") for n in range(JOBS + 1)]


def _config() -> str:
    return "\n".join(
        f'[[job]]\nname = "{name}"\nschedule = "{schedule}"\ncommand = "{command}"\n'
        + ('timezone = "Europe/Berlin"\n' if n % 3 == 0 else "")
        for n, (name, schedule, command) in enumerate(_jobs())
    )


def _matching(text: str) -> int:
    """How many jobs the page's text filter keeps for `text`."""
    return sum(any(text in field for field in job) for job in _jobs())


def _fill_store(state: Path) -> tuple[int, str]:
    """Write the runs' history and the big run's output; the big run's id and last line."""
    state.mkdir(parents=True)
    return asyncio.run(_fill(SqliteStore(state / "evercron.db")))


async def _fill(store: SqliteStore) -> tuple[int, str]:
    await store.migrate()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for n in range(JOBS):
        claims = [
            Claim(f"job-{n:04d}", start + dt.timedelta(minutes=k), Trigger.SCHEDULE)
            for k in range(RUNS_PER_JOB)
        ]
        ends = []
        for k, claimed in enumerate(await store.claim(claims, "bench")):
            assert claimed.run_id is not None
            at = claims[k].scheduled_at
            status = RunStatus.FAILED if k % 5 == 4 else RunStatus.SUCCEEDED
            took = dt.timedelta(seconds=1 + n % 7)
            code = 0 if status is RunStatus.SUCCEEDED else 1
            end = RunEnd(status, at + took, started_at=at, exit_code=code)
            ends.append(store.finish(claimed.run_id, end))
        await asyncio.gather(*ends)  # written together: one transaction
    (big,) = await store.claim([Claim(f"job-{JOBS:04d}", start, Trigger.MANUAL)], "bench")
    assert big.run_id is not None
    lines = b"".join(b"line %08d " % i + b"x" * (LINE - 15) + b"\n" for i in range(CHUNK))
    offset, chunks = 0, []
    while offset < BIG_BYTES:
        data = lines[offset % len(lines) : offset % len(lines) + CHUNK]
        stream = "stderr" if len(chunks) % 10 == 9 else "stdout"
        chunks.append(StoredChunk(offset, stream, time.time(), data))
        offset += len(data)
    for first in range(0, len(chunks), 64):
        await store.append_output(big.run_id, chunks[first : first + 64])
    end = start + dt.timedelta(minutes=2)
    done = RunEnd(RunStatus.SUCCEEDED, end, started_at=start, exit_code=0, output_bytes=offset)
    await store.finish(big.run_id, done)
    await store.close()
    last = chunks[-1].data.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
    return big.run_id, last


@contextlib.contextmanager
def _daemon(state: Path, config: Path) -> Iterator[tuple[str, str]]:
    log = open(state.parent / "daemon.log", "w")  # noqa: SIM115 - closed below
    arguments = ["--state-dir", str(state), "--listen", "127.0.0.1:0", "--config", str(config)]
    process = subprocess.Popen(
        [sys.executable, "-m", "evercron", "serve", *arguments],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "evercron listening on" not in _read(state):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start:\n{_read(state)}")
            time.sleep(0.1)
        address = json.loads((state / "daemon.json").read_text())
        yield address["url"], address["token"]
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _read(state: Path) -> str:
    return (state.parent / "daemon.log").read_text()


IN_VIEW_DRAWN = """rows => {
    const drawn = document.querySelectorAll('#jobs tbody tr');
    if (drawn.length !== rows) return false;
    const seen = [...drawn].slice(0, 40).filter((r) => r.getBoundingClientRect().top < innerHeight);
    return seen.length > 0 && seen.every((r) => r.querySelector('.strip').dataset.drawn);
}"""
LAST_DRAWN = "() => document.querySelector('#jobs tbody tr:last-child .strip').dataset.drawn"


def _jobs_page(browser: Browser, url: str, token: str) -> tuple[float, float, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{url}/#token={token}")
    page.wait_for_function(IN_VIEW_DRAWN, arg=JOBS + 1, polling="raf", timeout=60_000)
    drawn: float = page.evaluate("performance.now()")
    jumped: float = page.evaluate(
        "window.scrollTo(0, document.body.scrollHeight); performance.now()"
    )
    page.wait_for_function(LAST_DRAWN, polling="raf")
    end: float = page.evaluate("performance.now()") - jumped
    page.evaluate("window.scrollTo(0, 0)")
    typed: float = page.evaluate("document.getElementById('job-filter').focus(); performance.now()")
    page.keyboard.type("9")
    page.wait_for_function(
        f"() => document.getElementById('job-count').textContent.startsWith('{_matching('9')} of')",
        polling="raf",
    )
    narrowed: float = page.evaluate("performance.now()") - typed
    context.close()
    return drawn, end, narrowed


def _tail(browser: Browser, url: str, token: str, run_id: int, last_line: str) -> float:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}/runs/{run_id}#token={token}")
    page.wait_for_function(
        "last => (document.querySelector('pre.output .tail') || {}).textContent?.includes(last)",
        arg=last_line,
        polling="raf",
        timeout=60_000,
    )
    shown: float = page.evaluate("performance.now()")
    context.close()
    return shown


def _report(what: str, times: list[float], goal: float | None) -> None:
    first, then = times[0], times[1:] or times
    median = statistics.median(then)
    verdict = (
        "" if goal is None else f" (goal < {goal} ms: {'met' if median < goal else 'NOT met'})"
    )
    print(
        f"{what}: first {first:.0f} ms, then median {median:.0f} ms, max {max(then):.0f} ms"
        f"{verdict}; all: {', '.join(f'{t:.0f}' for t in times)}"
    )


if __name__ == "__main__":
    main()
