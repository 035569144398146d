"""A job's page (`/jobs/{name}`) in Chromium: its settings, next 10 fire times with DST
changes marked, success rate and chart of its runs, history page by page, the actions,
and the edit form with the live schedule preview."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.daemon.conftest import DaemonProcess, serving
from tests.daemon.web import job_row, opened, sign_in_link

CONFIG = """
[[job]]
name = "from-file"
schedule = "0 12 1 * *"
timezone = "Europe/Berlin"
command = "echo monthly"
"""
RUNS = 45
SETTINGS = [
    *("schedule", "command", "timezone", "timeout", "concurrency", "misfire"),
    *("misfire_grace", "jitter", "retries", "retry_backoff", "env", "cwd", "user"),
    *("group", "shell", "umask", "nice", "limits", "kill_grace", "kill_mode"),
    *("max_output", "log_output", "enabled", "description", "source"),
    *("created_at", "updated_at"),
]
FAIL_EVERY_THIRD = 'test $((EVERCRON_RUN_ID % 3)) -ne 0 || { echo "bad"; exit 4; }'


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("web-job")
    config = folder / "evercron.toml"
    config.write_text(CONFIG)
    with serving(folder / "state", "--config", str(config)) as started:
        started.add_job(
            name="busy",
            schedule="*/10 * * * *",
            command=FAIL_EVERY_THIRD,
            env={"TOKEN": "s3cret", "MODE": "fast"},
        )
        for _ in range(RUNS):
            started.wait_for_run(started.api("POST", "/api/v1/jobs/busy/trigger", 202)["id"])
        yield started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser) as fresh:
        yield fresh


def _runs(daemon: DaemonProcess, job: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = daemon.api(
        "GET", "/api/v1/runs", params={"job": job, "limit": 1000}
    )
    return runs


def test_every_setting_is_shown(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon, "/jobs/busy"))
    expect(page.locator("#settings dt")).to_have_count(len(SETTINGS))
    assert page.locator("#settings dt").all_text_contents() == SETTINGS
    setting = lambda name: page.locator(f'#settings dd[data-setting="{name}"]')  # noqa: E731
    expect(setting("schedule")).to_have_text("*/10 * * * * Every 10 minutes")
    expect(setting("env")).to_contain_text("TOKEN = s3cret")
    expect(setting("timezone")).to_contain_text("(the daemon's: ")
    expect(setting("source")).to_have_text("api")
    expect(page.locator("#job-source")).to_have_text("Made through the API.")


def test_the_next_10_fire_times_mark_dst_changes(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon, "/jobs/from-file"))
    fires = page.locator("#next-fires li")
    expect(fires).to_have_count(10)
    preview = daemon.api(
        "GET",
        "/api/v1/schedule/preview",
        params={"expression": "0 12 1 * *", "timezone": "Europe/Berlin", "count": 10},
    )
    for index, fire in enumerate(preview["fire_times"]):
        item = fires.nth(index)
        expect(item.locator("time")).to_have_attribute("datetime", fire["at"])
        expect(item.locator("time")).to_have_text(re.compile(rf"-01 12:00 {fire['zone']}$"))
        expect(item.locator(".dst")).to_have_count(1 if fire["dst_change"] else 0)
    # Ten months always cross a change of Europe/Berlin's offset.
    changes = [index for index, fire in enumerate(preview["fire_times"]) if fire["dst_change"]]
    assert changes
    later = [index for index in changes if index > 0]
    if later:
        before, after = (preview["fire_times"][later[0] + d]["zone"] for d in (-1, 0))
        expect(fires.nth(later[0]).locator(".dst")).to_have_text(f"DST: {before} → {after}")
    expect(page.locator("#next-fires .explanation")).to_contain_text("At 12:00, on day 1")


def test_a_config_file_job_says_where_it_is_defined(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon, "/jobs/from-file"))
    source = daemon.api("GET", "/api/v1/jobs/from-file")["source"]
    expect(page.locator("#job-source")).to_have_text(
        f"Defined in {source}: change it there (then reload the daemon)."
    )
    actions = page.locator("#job-actions")
    expect(actions.get_by_role("button", name="Run now")).to_be_visible()
    expect(actions.get_by_role("button", name="Edit")).to_have_count(0)
    expect(actions.get_by_role("button", name="Delete")).to_have_count(0)


def test_success_rate_and_a_chart_mark_for_each_run(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon, "/jobs/busy"))
    runs = _runs(daemon, "busy")[:100]
    good = sum(run["status"] == "succeeded" for run in runs)
    failed = sum(run["status"] == "failed" for run in runs)
    assert failed > 0 and good + failed == len(runs)
    percent = round(good / len(runs) * 1000) / 10
    expect(page.locator("#success-rate")).to_have_text(
        f"Success rate {percent:g}%: {good} of the last {len(runs)} finished runs succeeded, "
        f"{failed} failed."
    )
    marks = page.locator("#run-chart svg a.mark")
    expect(marks).to_have_count(len(runs))
    ids = [int(mark.get_attribute("data-run") or 0) for mark in marks.all()]
    assert ids == [run["id"] for run in reversed(runs)]  # oldest on the left
    expect(page.locator("#run-chart .mark .failure")).to_have_count(failed)
    for run in runs[:3]:
        mark = page.locator(f'#run-chart a.mark[data-run="{run["id"]}"]')
        expect(mark).to_have_attribute("data-status", run["status"])
        expect(mark.locator("rect.bar")).to_have_count(1)
        expect(mark.locator("circle.dot")).to_have_count(1)
        expect(mark.locator("title")).to_contain_text(f"run {run['id']} {run['status']}")


def test_the_history_page_by_page(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon, "/jobs/busy"))
    ids = [run["id"] for run in _runs(daemon, "busy")]
    rows = page.locator("#history tbody tr")

    def shown() -> list[int]:
        expect(rows.first).to_be_visible()
        return [int(row.get_attribute("data-run") or 0) for row in rows.all()]

    expect(rows).to_have_count(20)
    assert shown() == ids[:20]
    page.get_by_role("button", name="Older").click()
    expect(rows.first).to_have_attribute("data-run", str(ids[20]))
    assert shown() == ids[20:40]
    assert page.url.endswith(f"/jobs/busy?before={ids[19]}")
    page.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(len(ids) - 40)
    expect(page.get_by_role("button", name="Older")).to_be_hidden()
    page.get_by_role("button", name="Newer").click()
    expect(rows.first).to_have_attribute("data-run", str(ids[20]))
    page.reload()  # the page is in the address
    expect(rows.first).to_have_attribute("data-run", str(ids[20]))
    page.get_by_role("button", name="Newest").click()
    expect(rows.first).to_have_attribute("data-run", str(ids[0]))
    rows.first.get_by_role("link").click()
    expect(page.locator("#view h1")).to_have_text(f"Run {ids[0]} of busy")


def test_run_now_pause_resume_and_delete(daemon: DaemonProcess, page: Page) -> None:
    daemon.add_job(name="short-lived", schedule="@daily", command="echo brief")
    page.goto(sign_in_link(daemon, "/jobs/short-lived"))
    actions = page.locator("#job-actions")
    actions.get_by_role("button", name="Pause").click()
    expect(page.locator("#job-state")).to_have_text("paused")
    assert daemon.api("GET", "/api/v1/jobs/short-lived")["paused"] is True
    actions.get_by_role("button", name="Resume").click()
    expect(page.locator("#job-state")).to_have_text("active")
    assert daemon.api("GET", "/api/v1/jobs/short-lived")["paused"] is False
    actions.get_by_role("button", name="Run now").click()
    expect(page.locator("#view h1")).to_contain_text("of short-lived")  # the run, live
    expect(page.locator("#output-state")).to_have_text("ended: succeeded")
    page.go_back()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#job-actions").get_by_role("button", name="Delete").click()
    expect(page.locator("#error")).to_have_text("Deleted short-lived.")
    assert page.url == f"{daemon.url}/"
    expect(job_row(page, "short-lived")).to_have_count(0)
    daemon.api("GET", "/api/v1/jobs/short-lived", 404)


def test_the_edit_form_previews_and_saves(daemon: DaemonProcess, page: Page) -> None:
    daemon.add_job(name="editable", schedule="0 9 * * *", command="echo before", timeout=30)
    page.goto(sign_in_link(daemon, "/jobs/editable"))
    page.locator("#job-actions").get_by_role("button", name="Edit").click()
    form = page.locator("#edit-form")
    for setting in ("schedule", "command", "timezone", "timeout", "env", "max_output"):
        expect(form.locator(f'label:text-is("{setting}")')).to_be_visible()
    schedule = form.get_by_label("schedule", exact=True)
    expect(schedule).to_have_value("0 9 * * *")
    expect(form.get_by_label("timeout", exact=True)).to_have_value("30")
    preview = page.locator("#schedule-preview")
    expect(preview.locator("li")).to_have_count(5)  # the current schedule, at once
    schedule.fill("0 24 * * *")
    expect(preview).to_have_text('hour field "24": 24 is out of range 0-23')
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#error-schedule")).to_contain_text('hour field "24"')
    assert daemon.api("GET", "/api/v1/jobs/editable")["schedule"] == "0 9 * * *"
    schedule.fill("15 4 * * 1-5")
    expect(preview).to_contain_text("At 04:15, Monday through Friday")
    expect(preview.locator("li")).to_have_count(5)
    form.get_by_label("timeout", exact=True).fill("2m")
    form.get_by_label("command", exact=True).fill("echo after")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#error")).to_have_text("Saved editable.")
    expect(page.locator("#edit")).to_be_hidden()
    changed = daemon.api("GET", "/api/v1/jobs/editable")
    assert (changed["schedule"], changed["timeout"], changed["command"]) == (
        "15 4 * * 1-5",
        120,
        "echo after",
    )
    expect(page.locator('#settings dd[data-setting="schedule"]')).to_contain_text("15 4 * * 1-5")
    expect(page.locator("#next-fires li").first).to_contain_text("04:15")
