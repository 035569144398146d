"""The web page in a real headless Chromium (Debian's, driven by Playwright) against a
real daemon: signing in, the jobs and runs tables, actions, and live output."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

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

CONFIG = """
[[job]]
name = "hello"
schedule = "0 0 1 1 *"
command = "echo hello; sleep 0.3; echo oops >&2; echo bye"

[[job]]
name = "sleeper"
schedule = "0 0 1 1 *"
command = "sleep 60"

[[job]]
name = "markup"
schedule = "0 0 1 1 *"
command = "echo '<img src=x onerror=window.pwned=1>'"
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def daemon(start_daemon: Any, tmp_path: Path) -> DaemonProcess:
    config = tmp_path / "evercron.toml"
    config.write_text(CONFIG)
    started: DaemonProcess = start_daemon("--config", str(config))
    return started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    yield opened
    context.close()


def sign_in_link(daemon: DaemonProcess) -> str:
    done = run_cli("web", "--state-dir", str(daemon.state_dir), "--json")
    assert done.returncode == 0, done.stderr
    link: str = json.loads(done.stdout)["url"]
    return link


def job_row(page: Page, name: str) -> Any:
    return page.locator(f'#jobs tbody tr[data-job="{name}"]')


def test_the_page_and_its_files_need_no_token_but_the_api_does(daemon: DaemonProcess) -> None:
    with httpx.Client(base_url=daemon.url) as anonymous:
        html = anonymous.get("/")
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assert "script-src 'self'" in html.headers["content-security-policy"]
        assert daemon.token not in html.text
        for path, kind in (("/ui/app.js", "javascript"), ("/ui/app.css", "css")):
            answer = anonymous.get(path)
            assert answer.status_code == 200 and kind in answer.headers["content-type"]
        assert anonymous.get("/api/v1/jobs").status_code == 401
    assert "/ui/app.js" not in daemon.api("GET", "/api/v1/openapi.json")["paths"]


def test_the_web_command_prints_a_link_that_signs_in(daemon: DaemonProcess, page: Page) -> None:
    assert f"web page: {daemon.url}/ (`evercron web`" in daemon.log()
    link = sign_in_link(daemon)
    assert link.startswith(daemon.url + "/#token=")
    plain = run_cli("web", "--state-dir", str(daemon.state_dir))
    assert plain.returncode == 0 and plain.stdout.strip() == link
    page.goto(link)
    expect(job_row(page, "hello")).to_contain_text("0 0 1 1 *")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    expect(page.locator("#status")).to_contain_text("3 jobs")
    assert "token" not in page.url  # taken out of the address bar and the history


def test_the_web_command_without_a_daemon_is_one_clear_line(tmp_path: Path) -> None:
    done = run_cli("web", "--state-dir", str(tmp_path / "none"))
    assert done.returncode != 0 and "no running evercron daemon" in done.stderr
    assert "Traceback" not in done.stderr


def test_signing_in_by_hand_and_a_wrong_token(daemon: DaemonProcess, page: Page) -> None:
    page.goto(daemon.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#token", "not-the-token")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("wrong API token")
    page.fill("#token", daemon.token)
    page.click("#login-form button")
    expect(page.locator("#app")).to_be_visible()
    expect(job_row(page, "sleeper")).to_be_visible()
    page.click("#sign-out")
    expect(page.locator("#login")).to_be_visible()


def test_run_now_then_watch_its_output_live(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    job_row(page, "hello").get_by_role("button", name="Run now").click()
    run_row = page.locator('#runs tbody tr.run:has(td:text-is("hello"))').first
    expect(run_row).to_be_visible()
    run_id = run_row.get_attribute("data-run")
    expect(page.locator("#output-run")).to_have_text(run_id or "?")  # opened by itself
    output = page.locator("#output")
    expect(output).to_contain_text("hello")
    expect(page.locator("#output-status")).to_have_text("succeeded")
    expect(output).to_have_text("hello\noops\nbye\n")
    expect(page.locator("#output .stderr")).to_have_text("oops\n")
    runs = daemon.api("GET", "/api/v1/runs", params={"job": "hello"})
    assert [(r["trigger"], r["status"]) for r in runs] == [("manual", "succeeded")]
    expect(run_row).to_contain_text("succeeded")


def test_pause_resume_and_kill_from_the_page(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    row = job_row(page, "sleeper")
    row.get_by_role("button", name="Pause").click()
    expect(row).to_contain_text("paused")
    assert daemon.api("GET", "/api/v1/jobs/sleeper")["paused"] is True
    row.get_by_role("button", name="Resume").click()
    expect(row).to_contain_text("active")
    assert daemon.api("GET", "/api/v1/jobs/sleeper")["paused"] is False

    row.get_by_role("button", name="Run now").click()
    running = page.locator('#runs tbody tr.run:has(td:text-is("running"))')
    expect(running).to_have_count(1)
    run_id = int(running.get_attribute("data-run") or "0")
    running.get_by_role("button", name="Kill").click()
    assert daemon.wait_for_run(run_id)["status"] == "killed"
    expect(page.locator(f'#runs tbody tr[data-run="{run_id}"]')).to_contain_text("killed")


def test_names_commands_and_output_are_shown_as_text(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    row = job_row(page, "markup")
    expect(row).to_contain_text("<img src=x onerror=window.pwned=1>")
    row.get_by_role("button", name="Run now").click()
    page.locator('#runs tbody tr.run:has(td:text-is("markup")) td').first.click()
    expect(page.locator("#output-status")).to_have_text("succeeded")
    expect(page.locator("#output")).to_have_text("<img src=x onerror=window.pwned=1>\n")
    assert page.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_filters_narrow_the_runs(daemon: DaemonProcess, page: Page) -> None:
    for name in ("hello", "markup"):
        run = daemon.api("POST", f"/api/v1/jobs/{name}/trigger", 202)
        daemon.wait_for_run(run["id"])
    page.goto(sign_in_link(daemon))
    expect(page.locator("#runs tbody tr.run")).to_have_count(2)
    page.select_option("#filter-job", "markup")
    expect(page.locator("#runs tbody tr.run")).to_have_count(1)
    expect(page.locator("#runs tbody tr.run")).to_contain_text("markup")
    page.select_option("#filter-job", "")
    page.select_option("#filter-status", "failed")
    expect(page.locator("#runs tbody tr.run")).to_have_count(0)


def test_add_and_delete_a_job_from_the_page(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    page.fill("#add-name", "nightly")
    page.fill("#add-schedule", "0 24 * * *")
    page.fill("#add-command", "echo night")
    page.click("#add-form button")
    expect(page.locator("#error")).to_contain_text('hour field "24": 24 is out of range 0-23')
    expect(page.locator("#add-name")).to_have_value("nightly")  # kept, to be corrected
    page.fill("#add-schedule", "30 2 * * *")
    page.click("#add-form button")
    expect(job_row(page, "nightly")).to_contain_text("echo night")
    expect(page.locator("#error")).to_have_text("")
    expect(page.locator("#add-name")).to_have_value("")
    assert daemon.api("GET", "/api/v1/jobs/nightly")["source"] == "api"
    # Config jobs have no Delete button (they are changed in their file).
    expect(job_row(page, "hello").get_by_role("button", name="Delete")).to_have_count(0)
    page.on("dialog", lambda dialog: dialog.accept())
    job_row(page, "nightly").get_by_role("button", name="Delete").click()
    expect(job_row(page, "nightly")).to_have_count(0)
    daemon.api("GET", "/api/v1/jobs/nightly", 404)


def test_output_bytes_show_as_written(daemon: DaemonProcess, page: Page) -> None:
    # A euro sign split across two writes, a skull (its UTF-16 low half is U+DC80, the
    # first code of an escaped byte), an invalid byte and SSE-like text.
    daemon.add_job(
        name="bytes",
        schedule="@yearly",
        command=r"printf 'split \342\202'; sleep 0.3; "
        r"printf '\254 \360\237\222\200 \377 event: end\r\n'",
    )
    page.goto(sign_in_link(daemon))
    job_row(page, "bytes").get_by_role("button", name="Run now").click()
    expect(page.locator("#output-status")).to_have_text("succeeded")
    shown = page.locator("#output").evaluate("element => element.textContent")
    assert shown == "split \u20ac \U0001f480 \ufffd event: end\r\n"
