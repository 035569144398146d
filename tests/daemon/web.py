"""Driving the web page in Debian's Chromium (headless, through Playwright)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Browser, Locator, Page, expect

from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless on a closed network: no background connections, no sandbox (tests run as root).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
# Waits end as soon as their condition holds; the bound only matters on a loaded machine.
expect.set_options(timeout=TIMEOUT_MS)


def sign_in_link(daemon: DaemonProcess, path: str = "/") -> str:
    """The link `evercron web` prints, pointed at `path`."""
    done = run_cli("web", "--state-dir", str(daemon.state_dir), "--json")
    assert done.returncode == 0, done.stderr
    link: str = json.loads(done.stdout)["url"]
    return link.replace("/#token=", f"{path}#token=")


@contextmanager
def opened(browser: Browser, **options: Any) -> Iterator[Page]:
    """A page in a fresh browser context (its own session storage); page errors fail."""
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors


def job_row(page: Page, name: str) -> Locator:
    """A job's row in the jobs table."""
    return page.locator(f'#jobs tbody tr[data-job="{name}"]')


def cell(row: Locator, label: str) -> Locator:
    """The cell of a table row named by its column (`data-label`, as the page marks
    each cell for the phone layout)."""
    return row.locator(f'td[data-label="{label}"]')


def output_text(page: Page) -> str:
    """The text of the output view as a reader sees it (textContent)."""
    text: str = page.locator("pre.output").evaluate("element => element.textContent")
    return text


def page_width_fits(page: Page) -> bool:
    """Whether the page has no sideways scrolling."""
    fits: bool = page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return fits
