"""Take the README's screenshots of the web page (docs/screenshots/*.png).

Starts a daemon on a temporary state dir, gives it a few jobs and runs, and photographs
the pages in Debian's Chromium: light, dark and a 375 px phone.

    .venv/bin/python scripts/web_screenshots.py
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, sync_playwright

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BUILD = r"""
printf '\033[1mbuilding evercron\033[0m\n'
for step in fetch compile test package; do
  printf '\033[36m==>\033[0m %s\n' "$step"; sleep 0.2
done
printf '\033[33mwarning:\033[0m 2 tests skipped (no network)\n' >&2
printf '\033[1;32mok\033[0m 412 tests passed in 3.1s\n'
"""
JOBS: list[dict[str, Any]] = [
    {
        "name": "backup",
        "schedule": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "command": "echo dumping; sleep 0.4; echo done",
        "timeout": "1h",
    },
    {"name": "build", "schedule": "*/30 * * * *", "command": BUILD.strip()},
    {
        "name": "flaky-sync",
        "schedule": "*/15 * * * *",
        "timezone": "Asia/Tokyo",
        "command": 'test $((EVERCRON_RUN_ID % 3)) -ne 0 || { echo "remote busy" >&2; exit 75; }',
        "retries": 1,
        "retry_backoff": 0,
    },
    {
        "name": "report",
        "schedule": "30 9 * * MON-FRI",
        "timezone": "America/New_York",
        "command": "echo mailing the report",
    },
    {"name": "rotate-logs", "schedule": "@daily", "command": "true", "enabled": True},
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, _daemon(Path(folder)) as (url, token):
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        for job in JOBS:
            http.post("/api/v1/jobs", json=job).raise_for_status()
        build = 0
        for round_ in range(8):
            for job in JOBS:
                if job["name"] == "report" and round_ % 2:
                    continue
                run = http.post(f"/api/v1/jobs/{job['name']}/trigger").json()
                build = run["id"] if job["name"] == "build" else build
                _wait(http, run["id"])
        http.post("/api/v1/jobs/rotate-logs/pause").raise_for_status()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            link = f"#token={token}"
            strips = "#jobs .strip[data-drawn]"
            _shoot(browser, f"{url}/{link}", "jobs-light.png", strips)
            _shoot(browser, f"{url}/jobs/flaky-sync{link}", "job-dark.png", "svg", "dark")
            _shoot(browser, f"{url}/runs/{build}{link}", "run-dark.png", "#output-state", "dark")
            _shoot(browser, f"{url}/{link}", "jobs-phone.png", strips, phone=True)
            browser.close()
    print(f"screenshots in {OUT}")


def _shoot(
    browser: Browser,
    url: str,
    name: str,
    ready: str,
    scheme: str = "light",
    phone: bool = False,
) -> None:
    size = {"width": 375, "height": 812} if phone else {"width": 1280, "height": 800}
    context = browser.new_context(viewport=size, color_scheme=scheme, is_mobile=phone)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(ready)
    page.wait_for_timeout(500)  # the last frame's updates
    page.screenshot(path=str(OUT / name), full_page=not phone)
    context.close()


def _wait(http: httpx.Client, run_id: int) -> None:
    while http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running":
        time.sleep(0.05)


@contextlib.contextmanager
def _daemon(folder: Path) -> Iterator[tuple[str, str]]:
    state = folder / "state"
    log = open(folder / "daemon.log", "w")  # noqa: SIM115 - closed below
    arguments = ["--state-dir", str(state), "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "evercron", "serve", *arguments],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"TZ": "Europe/Berlin", "PATH": "/usr/bin:/bin"},
    )
    try:
        while "evercron listening on" not in (folder / "daemon.log").read_text():
            if process.poll() is not None:
                raise SystemExit((folder / "daemon.log").read_text())
            time.sleep(0.1)
        address = json.loads((state / "daemon.json").read_text())
        yield address["url"], address["token"]
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


if __name__ == "__main__":
    main()
