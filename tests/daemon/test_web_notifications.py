"""The notifications page (`/notifications`) in Chromium against real webhook receivers on
loopback: a delivery seen failing, then delivered, as the page refreshes itself; one given
up on; the filters kept in the address; the link to the run; a receiver's answer shown as
text only; the viewer token (no secret on the page or in the API); the empty state; a
phone in dark mode; the keyboard, whose focus a refresh leaves where it was."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.daemon.conftest import DaemonProcess, serving
from tests.daemon.web import cell, opened, page_width_fits, sign_in_link
from tests.notify.receivers import WebhookReceiver

VIEWER = "a-viewer-token-for-notifications"
SECRET = "a-channel-signing-secret"
URL_SECRET = "token-in-the-webhook-path"
ENV_SECRET = "an-env-value-nobody-sees"
MARKUP = "<img src=x onerror=window.pwned=1>"
CONFIG = """
[[job]]
name = "flaky"
schedule = "0 0 1 1 *"
command = "echo checking; exit 3"
env = {{ API_TOKEN = "{env}" }}

[[notify]]
name = "hook"
url = "{hook}/{url_secret}"
secret = "{secret}"
retry_backoff = "300ms"
retry_max_interval = "300ms"

[[notify]]
name = "dead"
url = "{dead}"
retry_backoff = "200ms"
give_up_after = "1s"
"""


@dataclass
class Setup:
    """The daemon, its two receivers and the failed run both channels report."""

    daemon: DaemonProcess
    hook: WebhookReceiver
    dead: WebhookReceiver
    run: dict[str, Any]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("web-notifications")
    config = folder / "evercron.toml"
    with (
        WebhookReceiver([500]) as hook,
        WebhookReceiver([503], body=MARKUP.encode()) as dead,
    ):
        config.write_text(
            CONFIG.format(
                env=ENV_SECRET, hook=hook.url, url_secret=URL_SECRET, secret=SECRET, dead=dead.url
            )
        )
        env = {"EVERCRON_VIEWER_TOKEN": VIEWER}
        with serving(folder / "state", "--config", str(config), env=env) as daemon:
            run = daemon.api("POST", "/api/v1/jobs/flaky/trigger", 202)
            yield Setup(daemon, hook, dead, daemon.wait_for_run(run["id"]))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser) as fresh:
        yield fresh


def _row(page: Page, channel: str) -> Locator:
    return page.locator(f'#notifications tbody tr[data-channel="{channel}"]')


def test_a_failing_delivery_then_delivered_live(setup: Setup, page: Page) -> None:
    page.goto(sign_in_link(setup.daemon, "/notifications"))
    hook = _row(page, "hook")
    expect(cell(hook, "last error")).to_have_text("HTTP 500: ok")  # the receiver refused
    expect(hook).to_have_attribute("data-state", "pending")
    expect(cell(hook, "state")).to_have_text("pending (retrying)")
    expect(cell(hook, "next try").locator("time")).to_have_count(1)
    dead = _row(page, "dead")
    expect(dead).to_have_attribute("data-state", "failed")  # given up on
    # The focus is on a row that does not change: redrawing the row beside it keeps it.
    focused = f'#notifications tr[data-channel="dead"] a[href="/runs/{setup.run["id"]}"]'
    page.locator(focused).focus()
    page.evaluate("window.notReloaded = true")
    setup.hook.statuses = [200]
    expect(hook).to_have_attribute("data-state", "sent")  # the page refreshed itself
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate(f"document.activeElement.matches({focused!r})")
    expect(cell(hook, "answer")).to_have_text("HTTP 200")
    expect(cell(hook, "next try")).to_have_text("")
    expect(cell(hook, "last error")).to_have_text("HTTP 500: ok")
    assert int(cell(hook, "attempts").inner_text()) >= 2
    assert [r.answered for r in setup.hook.requests].count(200) == 1
    for column in ("event", "job", "run"):
        expect(cell(hook, column)).to_have_text(
            {"event": "failed", "job": "flaky", "run": f"#{setup.run['id']}"}[column]
        )
    # Times in the daemon's zone, named, relative beside them, the exact instant on hover.
    sent = cell(hook, "sent").locator("time")
    expect(sent).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? \S+$"))
    expect(sent).to_have_attribute("title", re.compile(r"\(\d{4}-\d\d-\d\dT[\d:.]+(Z|\+00:00)\)$"))
    expect(cell(hook, "sent").locator(".relative")).to_have_text(re.compile(r"ago$|^now$"))
    # The receiver's answer is text, never markup.
    expect(cell(dead, "last error")).to_have_text(f"HTTP 503: {MARKUP}")
    assert page.locator("#view img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_filters_live_in_the_address_and_the_run_is_a_link(setup: Setup, page: Page) -> None:
    page.goto(sign_in_link(setup.daemon, "/notifications"))
    rows = page.locator("#notifications tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator('#nav a[href="/notifications"]')).to_have_attribute("aria-current", "page")
    expect(_row(page, "dead")).to_have_attribute("data-state", "failed")
    page.select_option("#notifications-state", "failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-channel", "dead")
    expect(page).to_have_url(f"{setup.daemon.url}/notifications?state=failed")
    page.reload()
    expect(page.locator("#notifications-state")).to_have_value("failed")
    expect(rows).to_have_count(1)
    page.select_option("#notifications-state", "suppressed")
    expect(page.locator("#notifications-note")).to_have_text("No deliveries match these filters.")
    expect(page.locator("#notifications")).to_be_hidden()
    page.select_option("#notifications-state", "")
    names = page.locator("#channel-names option")
    expect(names).to_have_count(2)  # the channels seen, offered to the channel filter
    assert [name.get_attribute("value") for name in names.all()] == ["dead", "hook"]
    page.fill("#notifications-channel", "hook")
    page.locator("#notifications-channel").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-channel", "hook")
    expect(page).to_have_url(f"{setup.daemon.url}/notifications?channel=hook")
    run = setup.run["id"]
    cell(_row(page, "hook"), "run").get_by_role("link", name=f"#{run}").click()
    expect(page).to_have_url(f"{setup.daemon.url}/runs/{run}")
    expect(page.locator("#view h1")).to_have_text(f"Run {run} of flaky")
    page.go_back()
    expect(page.locator("#view h1")).to_have_text("Notifications")
    expect(page.locator("#notifications-channel")).to_have_value("hook")
    expect(rows).to_have_count(1)


def test_the_viewer_on_a_phone_in_dark_mode_sees_no_secret(setup: Setup, browser: Browser) -> None:
    options: dict[str, Any] = {"viewport": {"width": 375, "height": 740}, "is_mobile": True}
    with opened(browser, color_scheme="dark", **options) as page:
        page.goto(setup.daemon.url + "/")
        page.fill("#token", VIEWER)
        page.click("#login-form button")
        expect(page.locator("#status")).to_contain_text("read-only")
        page.get_by_role("link", name="Notifications").click()
        expect(page.locator("#notifications tbody tr")).to_have_count(2)
        expect(_row(page, "dead")).to_have_attribute("data-state", "failed")
        assert page_width_fits(page)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(int(x) for x in re.findall(r"\d+", background)) < 150  # dark
        answer: str = page.evaluate(
            """async () => {
                const token = sessionStorage.getItem("evercron-token");
                const response = await fetch("/api/v1/notifications", {
                    headers: { Authorization: `Bearer ${token}` },
                });
                return `${response.status} ${await response.text()}`;
            }"""
        )
        assert answer.startswith("200 [")
        for shown in (page.content(), answer):
            for secret in (SECRET, URL_SECRET, ENV_SECRET, "API_TOKEN", setup.hook.url):
                assert secret not in shown


def test_the_keyboard_reaches_the_page_its_filters_and_links(setup: Setup, page: Page) -> None:
    page.goto(sign_in_link(setup.daemon))
    expect(page.locator("#jobs tbody tr")).to_have_count(1)

    def tab_to(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to('nav a[href="/notifications"]')
    page.keyboard.press("Enter")
    expect(page.locator("#view h1")).to_have_text("Notifications")
    expect(_row(page, "dead")).to_have_attribute("data-state", "failed")
    tab_to("#notifications-state")
    tab_to(f'#notifications tr[data-channel="dead"] a[href="/runs/{setup.run["id"]}"]')
    page.keyboard.press("Enter")
    expect(page.locator("#view h1")).to_have_text(f"Run {setup.run['id']} of flaky")


def test_the_empty_page_says_how_to_add_a_channel(start_daemon: Any, page: Page) -> None:
    daemon: DaemonProcess = start_daemon()
    page.goto(sign_in_link(daemon, "/notifications"))
    note = page.locator("#notifications-note")
    expect(note).to_contain_text("No notifications yet.")
    expect(note).to_contain_text("[[notify]]")
    expect(note).to_contain_text("evercron notify test ops")
    expect(page.locator("#notifications")).to_be_hidden()
