"""The page signed in with the read-only viewer token: it reads every page, shows no
secret, offers no change (the daemon would refuse it with 403 anyway)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.daemon.conftest import DaemonProcess, serving
from tests.daemon.web import job_row, opened, output_text

VIEWER = "a-viewer-token-for-web-tests"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("web-access")
    with serving(folder / "state", env={"EVERCRON_VIEWER_TOKEN": VIEWER}) as started:
        started.add_job(
            name="secret-keeper",
            schedule="@daily",
            command="echo working; sleep 60",
            env={"API_KEY": "very-secret-value"},
        )
        yield started


@pytest.fixture
def viewer_page(browser: Browser, daemon: DaemonProcess) -> Iterator[Page]:
    with opened(browser) as page:
        page.goto(daemon.url + "/")
        page.fill("#token", VIEWER)
        page.click("#login-form button")
        expect(page.locator("#status")).to_contain_text("read-only")
        yield page


@pytest.fixture
def running(daemon: DaemonProcess) -> Iterator[dict[str, Any]]:
    run: dict[str, Any] = daemon.api("POST", "/api/v1/jobs/secret-keeper/trigger", 202)
    yield run
    daemon.api("POST", f"/api/v1/runs/{run['id']}/kill", 202)
    daemon.wait_for_run(run["id"])


def test_the_viewer_sees_every_page_but_no_action(
    daemon: DaemonProcess, viewer_page: Page, running: dict[str, Any]
) -> None:
    page = viewer_page
    expect(job_row(page, "secret-keeper")).to_contain_text("echo working")
    expect(page.locator("#select-all")).to_have_count(0)
    expect(page.locator("#jobs input.pick")).to_have_count(0)
    expect(page.locator("#add-job")).to_have_count(0)
    expect(page.locator("#bulk")).to_have_count(0)
    job_row(page, "secret-keeper").get_by_role("link", name="secret-keeper").click()
    expect(page.locator("#settings")).to_contain_text("API_KEY")
    expect(page.locator('#settings dd[data-setting="env"]')).to_have_text("API_KEY = (hidden)")
    expect(page.locator("#job-actions button")).to_have_count(0)
    expect(page.locator("#history tbody tr")).to_have_count(1)
    assert "very-secret-value" not in page.content()
    page.goto(f"{daemon.url}/runs/{running['id']}")
    expect(page.locator("pre.output")).to_contain_text("working")
    expect(page.locator("#output-state")).to_have_text("live")
    expect(page.locator("#run-actions button")).to_have_count(0)
    page.goto(f"{daemon.url}/runs")
    expect(page.locator(f'#runs tbody tr[data-run="{running["id"]}"]')).to_be_visible()
    expect(page.locator("#runs button")).to_have_count(0)


def test_a_change_forced_from_the_viewers_page_is_refused(
    daemon: DaemonProcess, viewer_page: Page, running: dict[str, Any]
) -> None:
    page = viewer_page
    answers = page.evaluate(
        """async (runId) => {
            const token = sessionStorage.getItem("evercron-token");
            const call = async (method, path) => {
                const response = await fetch(path, {
                    method, headers: { Authorization: `Bearer ${token}` },
                });
                return [response.status, (await response.json()).error];
            };
            return [
                await call("POST", "/api/v1/jobs/secret-keeper/pause"),
                await call("POST", `/api/v1/runs/${runId}/kill`),
                await call("DELETE", "/api/v1/jobs/secret-keeper"),
            ];
        }""",
        running["id"],
    )
    for status, error in answers:
        assert status == 403 and "viewer token can only read" in error
    assert daemon.api("GET", "/api/v1/jobs/secret-keeper")["paused"] is False
    assert daemon.api("GET", f"/api/v1/runs/{running['id']}")["status"] == "running"


def test_the_viewer_downloads_output(
    daemon: DaemonProcess, viewer_page: Page, running: dict[str, Any]
) -> None:
    page = viewer_page
    page.goto(f"{daemon.url}/runs/{running['id']}")
    expect(page.locator("pre.output")).to_contain_text("working")
    with page.expect_download() as waiting:
        page.click("#download")
    assert waiting.value.suggested_filename == f"evercron-run-{running['id']}-secret-keeper.log"
    assert output_text(page) == "working\n"
