"""The nodes page (`/nodes`) in Chromium: two nodes on one PostgreSQL - each node's page
lists both, with their state, tags, heartbeat, version, pid and running runs (linked to
the run, whose page names its node, linked back, and fence); a drain through one node's
page shows on the other's, live, and so does an undrain and a node that left; the
definitions the nodes' files disagree on; the viewer token sees no drain button and is
refused one. And a single node on SQLite: itself, alive, with what several nodes need; a
phone in dark mode; the keyboard alone drains and undrains it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.cluster.conftest import start_node  # noqa: F401 - the cluster's fixture, reused
from tests.daemon.conftest import DaemonProcess
from tests.daemon.web import cell, opened, page_width_fits, sign_in_link

VIEWER = "a-viewer-token-for-the-nodes-page"
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? \S+$")  # "2026-12-07 02:30:05 UTC"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser) as fresh:
        yield fresh


def _row(page: Page, name: str) -> Locator:
    return page.locator(f'#nodes tbody tr[data-node="{name}"]')


def _apply(node: DaemonProcess, command: str) -> None:
    """Make `node`'s files define job "nightly" with `command` (as `evercron apply`)."""
    job = {"name": "nightly", "schedule": "@daily", "command": command, "source": "site.toml"}
    node.api("POST", "/api/v1/apply", json={"jobs": [job]})


def test_two_nodes_drained_and_undrained_through_the_page(
    start_node: Any,  # noqa: F811 - the fixture imported above
    browser: Browser,
    page: Page,
    marker: Any,
) -> None:
    a = start_node("a", "--node-tag", "gpu", config=[f'viewer_token = "{VIEWER}"'])
    b = start_node("b")
    a.add_job(name="long", schedule="@yearly", run_on=["gpu"], command=marker.sleep())
    run = a.api("POST", "/api/v1/jobs/long/trigger", 202)
    _apply(a, "echo from-a")
    _apply(b, "echo from-b")  # applied last: b's definition is in force, a's disagrees

    page.goto(sign_in_link(b, "/nodes"))
    expect(page.locator("#view h1")).to_have_text("Nodes")
    expect(page.locator('#nav a[href="/nodes"]')).to_have_attribute("aria-current", "page")
    rows = page.locator("#nodes tbody tr")
    expect(rows).to_have_count(2)
    assert [row.get_attribute("data-node") for row in rows.all()] == ["a", "b"]
    row_a, row_b = _row(page, "a"), _row(page, "b")
    expect(cell(row_a, "state")).to_have_text("alive")
    expect(cell(row_a, "tags")).to_have_text("gpu")
    expect(cell(row_b, "tags")).to_have_text("-")
    expect(cell(row_b, "node")).to_have_text("b (this node)")
    expect(cell(row_a, "node")).to_have_text("a")
    expect(cell(row_a, "pid")).to_have_text(str(a.process.pid))
    expect(cell(row_a, "version")).to_have_text(a.api("GET", "/api/v1/status")["version"])
    beat = cell(row_a, "heartbeat").locator("time")
    expect(beat).to_have_text(TIME)  # in the daemon's zone, named
    expect(beat).to_have_attribute("title", re.compile(r"\(\d{4}-\d\d-\d\dT[\d:.]+(Z|\+00:00)\)$"))
    expect(cell(row_a, "heartbeat").locator(".relative")).to_have_text(re.compile(r"ago$|^now$"))
    expect(page.locator("#nodes-store")).to_contain_text("2 of 2 nodes live on postgresql://")
    expect(page.locator("#nodes-note")).to_be_hidden()
    disagreement = page.locator('#disagreements li[data-job="nightly"][data-node="a"]')
    expect(disagreement).to_have_text(
        "node a's files define job nightly otherwise: node b's definition, applied last, "
        "is in force."
    )

    # The run a runs is linked from a's row (it was started on a, seen from b).
    running = cell(row_a, "running").get_by_role("link", name=f"#{run['id']}")
    running.click()
    expect(page).to_have_url(f"{b.url}/runs/{run['id']}")
    details = page.locator("#run-details")
    expect(details.locator('dd[data-field="node"]')).to_have_text("a")
    fence = b.api("GET", f"/api/v1/runs/{run['id']}")["fence"]
    assert fence >= 1
    expect(details.locator('dd[data-field="fence"]')).to_have_text(str(fence))
    details.locator('dd[data-field="node"] a').click()
    expect(page).to_have_url(f"{b.url}/nodes")

    # Drained through b's page: b shows it at once, a's own page shows it too.
    _row(page, "a").get_by_role("button", name="drain node a").click()
    expect(cell(row_a, "state")).to_have_text("draining")
    expect(page.locator("#error")).to_have_text(re.compile("^Node a is draining"))
    expect(page.locator(":focus")).to_have_accessible_name("undrain node a")
    assert [n["state"] for n in a.api("GET", "/api/v1/nodes")] == ["draining", "alive"]
    with opened(browser) as on_a:
        on_a.goto(sign_in_link(a, "/nodes"))
        expect(cell(_row(on_a, "a"), "state")).to_have_text("draining")
        expect(cell(_row(on_a, "a"), "node")).to_have_text("a (this node)")
        # Undrained through a's page: b's page shows it by refreshing itself.
        page.evaluate("window.notReloaded = true")
        _row(on_a, "a").get_by_role("button", name="undrain node a").click()
        expect(cell(_row(on_a, "a"), "state")).to_have_text("alive")
    expect(cell(row_a, "state")).to_have_text("alive")
    assert page.evaluate("window.notReloaded") is True

    # The viewer sees no button, and the API refuses it a drain.
    with opened(browser) as viewer:
        viewer.goto(a.url + "/nodes")
        viewer.fill("#token", VIEWER)
        viewer.click("#login-form button")
        expect(cell(_row(viewer, "b"), "state")).to_have_text("alive")
        expect(viewer.locator("#nodes button")).to_have_count(0)
        refused = viewer.evaluate(
            """async () => {
                const token = sessionStorage.getItem("evercron-token");
                const response = await fetch("/api/v1/nodes/b/drain", {
                    method: "POST", headers: { Authorization: `Bearer ${token}` },
                });
                return response.status;
            }"""
        )
        assert refused == 403

    # a's run ends; a stops gracefully and leaves: b's page shows it.
    a.api("POST", f"/api/v1/runs/{run['id']}/kill", 202)
    assert a.wait_for_run(run["id"])["status"] == "killed"
    expect(cell(row_a, "running")).to_have_text("-")
    assert a.stop() == 0
    expect(cell(row_a, "state")).to_have_text("left")
    expect(page.locator("#nodes-store")).to_contain_text("1 of 2 nodes live")
    expect(page.locator("#disagreements")).to_be_hidden()  # a left: its files count no more


def test_a_single_sqlite_node_shows_itself_on_a_phone_in_dark_mode(
    start_daemon: Any, browser: Browser
) -> None:
    daemon: DaemonProcess = start_daemon("--node-tag", "local")
    options: dict[str, Any] = {"viewport": {"width": 375, "height": 740}, "is_mobile": True}
    with opened(browser, color_scheme="dark", **options) as page:
        page.goto(sign_in_link(daemon, "/nodes"))
        rows = page.locator("#nodes tbody tr")
        expect(rows).to_have_count(1)
        name = daemon.api("GET", "/api/v1/status")["node"]
        row = _row(page, name)
        expect(cell(row, "node")).to_have_text(f"{name} (this node)")
        expect(cell(row, "state")).to_have_text("alive")
        expect(cell(row, "state").locator(".state")).to_have_class("state node-alive")
        expect(cell(row, "tags")).to_have_text("local")
        expect(cell(row, "pid")).to_have_text(str(daemon.process.pid))
        expect(cell(row, "heartbeat").locator("time")).to_have_text(TIME)
        store = page.locator("#nodes-store")
        expect(store).to_contain_text(f"SQLite ({daemon.state_dir}")
        expect(store).to_contain_text("so it is the only node there is.")
        note = page.locator("#nodes-note")
        expect(note).to_contain_text("Several nodes need PostgreSQL:")
        expect(note).to_contain_text("--database-url postgresql://")
        expect(note).to_contain_text('The README\'s section "Several nodes on one PostgreSQL"')
        expect(page.locator("#disagreements")).to_be_hidden()
        assert page_width_fits(page)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(int(x) for x in re.findall(r"\d+", background)) < 150  # dark
        page.reload()  # the deep link survives a reload
        expect(cell(_row(page, name), "state")).to_have_text("alive")


def test_the_keyboard_reaches_the_nodes_page_and_drains(start_daemon: Any, page: Page) -> None:
    daemon: DaemonProcess = start_daemon()
    name = daemon.api("GET", "/api/v1/status")["node"]
    page.goto(sign_in_link(daemon))
    expect(page.locator("#view h1")).to_have_text("Jobs")

    def tab_to(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to('nav a[href="/nodes"]')
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{daemon.url}/nodes")
    state = cell(_row(page, name), "state")
    expect(state).to_have_text("alive")
    tab_to("#nodes td.actions button")
    page.keyboard.press("Enter")
    expect(state).to_have_text("draining")
    assert daemon.api("GET", "/api/v1/nodes")[0]["state"] == "draining"
    # The focus moves to the row's new button once the page has redrawn it.
    expect(page.locator(":focus")).to_have_accessible_name(f"undrain node {name}")
    page.keyboard.press("Enter")
    expect(state).to_have_text("alive")
    assert daemon.api("GET", "/api/v1/nodes")[0]["state"] == "alive"
