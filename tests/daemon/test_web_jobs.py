"""The jobs page (`/`) in Chromium: the table of a thousand jobs, the status strips, the
filters, bulk run/pause/resume, and adding a job with the live schedule preview."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.daemon.conftest import DaemonProcess, serving
from tests.daemon.web import job_row, opened, sign_in_link

MANY = 1000


def _config(count: int) -> str:
    tables = [
        f'[[job]]\nname = "job-{n:04d}"\nschedule = "{n % 60} 3 * * *"\n'
        f'command = "echo job {n}"\ntimezone = "{"Asia/Tokyo" if n % 2 else "UTC"}"\n'
        for n in range(count)
    ]
    return "\n".join(tables)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("web-jobs")
    config = folder / "evercron.toml"
    config.write_text(_config(MANY))
    with serving(folder / "state", "--config", str(config)) as started:
        yield started


@pytest.fixture
def page(browser: Browser, daemon: DaemonProcess) -> Iterator[Page]:
    with opened(browser) as fresh:
        fresh.goto(sign_in_link(daemon))
        expect(fresh.locator("#job-count")).to_contain_text("jobs")
        yield fresh


def _rows(page: Page) -> int:
    count: int = page.locator("#jobs tbody tr:not([hidden])").count()
    return count


def test_a_thousand_jobs_each_with_its_schedule_and_next_run(
    daemon: DaemonProcess, page: Page
) -> None:
    expect(page.locator("#job-count")).to_have_text(f"{MANY} of {MANY} jobs")
    row = job_row(page, "job-0007")
    expect(row).to_contain_text("7 3 * * *")
    expect(row).to_contain_text("At 03:07")
    expect(row).to_contain_text("echo job 7")
    # Times in the job's zone, named, with a relative time beside them.
    expect(row.locator("time")).to_have_text(re.compile(r"\d{4}-\d\d-\d\d 03:07 Asia/Tokyo"))
    expect(row.locator(".relative")).to_have_text(re.compile(r"in \d+ (min|h)"))
    expect(job_row(page, "job-0008").locator("time")).to_have_text(re.compile(r"03:08 UTC$"))
    assert row.locator("time").get_attribute("datetime") == daemon.api(
        "GET", "/api/v1/jobs/job-0007"
    )["next_fire_at"].replace(".000000", "")


def test_filters_by_text_and_status_in_the_address(daemon: DaemonProcess, page: Page) -> None:
    page.fill("#job-filter", "job-012")
    expect(page.locator("#job-count")).to_have_text(f"10 of {MANY} jobs")
    assert page.url.endswith("/?q=job-012")
    page.fill("#job-filter", "echo job 999")  # the command too
    expect(page.locator("#job-count")).to_have_text(f"1 of {MANY} jobs")
    page.fill("#job-filter", "")
    page.select_option("#job-status", "paused")
    expect(page.locator("#job-count")).to_have_text(f"0 of {MANY} jobs")
    page.reload()  # the filter is in the address
    expect(page.locator("#job-count")).to_have_text(f"0 of {MANY} jobs")
    assert page.locator("#job-status").input_value() == "paused"


def test_bulk_pause_resume_and_run(daemon: DaemonProcess, page: Page) -> None:
    page.fill("#job-filter", "job-002")
    expect(page.locator("#job-count")).to_have_text(f"10 of {MANY} jobs")
    expect(page.locator("#bulk")).to_be_hidden()
    page.check("#select-all")
    expect(page.locator("#picked")).to_have_text("10 selected")
    page.locator("#bulk").get_by_role("button", name="Pause").click()
    expect(page.locator("#bulk-result")).to_have_text("Pause: done for 10 of 10 jobs.")
    names = [f"job-{n:04d}" for n in range(20, 30)]
    assert all(daemon.api("GET", f"/api/v1/jobs/{name}")["paused"] for name in names)
    assert daemon.api("GET", "/api/v1/jobs/job-0030")["paused"] is False
    expect(job_row(page, "job-0025")).to_contain_text("paused")
    page.fill("#job-filter", "")
    page.select_option("#job-status", "paused")
    expect(page.locator("#job-count")).to_have_text(f"10 of {MANY} jobs")
    # Only what is shown and ticked: untick two, resume the other eight.
    job_row(page, "job-0021").locator("input.pick").uncheck()
    job_row(page, "job-0022").locator("input.pick").uncheck()
    expect(page.locator("#picked")).to_have_text("8 selected")
    page.locator("#bulk").get_by_role("button", name="Resume").click()
    expect(page.locator("#job-count")).to_have_text(f"2 of {MANY} jobs")
    paused = [n for n in names if daemon.api("GET", f"/api/v1/jobs/{n}")["paused"]]
    assert paused == ["job-0021", "job-0022"]
    page.check("#select-all")
    page.locator("#bulk").get_by_role("button", name="Run now").click()
    expect(page.locator("#bulk-result")).to_have_text("Run now: done for 2 of 2 jobs.")
    for name in ("job-0021", "job-0022"):
        runs = daemon.api("GET", "/api/v1/runs", params={"job": name})
        assert [run["trigger"] for run in runs] == ["manual"]
    page.locator("#bulk").get_by_role("button", name="Resume").click()
    expect(page.locator("#job-count")).to_have_text(f"0 of {MANY} jobs")


def test_the_strip_shows_the_last_20_runs_each_linked(daemon: DaemonProcess, page: Page) -> None:
    daemon.add_job(name="strip", schedule="@yearly", command='test "$EVERCRON_RUN_ID" -ne 0')
    daemon.add_job(name="strip-odd", schedule="@yearly", command="exit $((EVERCRON_RUN_ID % 2))")
    runs = [
        daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/strip-odd/trigger", 202)["id"])
        for _ in range(22)
    ]
    # Out of view (after a thousand rows) its strip is not drawn; scrolled to, it is.
    row = job_row(page, "strip-odd")
    expect(row).to_have_count(1)
    assert row.locator(".strip").get_attribute("data-drawn") is None
    row.scroll_into_view_if_needed()
    expect(row.locator(".strip")).to_have_attribute("data-drawn", "20")
    page.fill("#job-filter", "strip-odd")
    marks = row.locator(".strip .mark")
    expect(marks).to_have_count(20)
    shown = runs[-20:]  # oldest first, the newest on the right
    for index in (0, 19):
        mark = marks.nth(index)
        expect(mark).to_have_attribute("href", f"/runs/{shown[index]['id']}")
        status = shown[index]["status"]
        expect(mark).to_have_class(f"mark status-{status}")
        expect(mark).to_have_attribute("aria-label", f"run {shown[index]['id']} {status}")
    page.select_option("#job-status", "failing" if runs[-1]["status"] == "failed" else "active")
    expect(job_row(page, "strip-odd")).to_be_visible()
    # One tab stop per strip; the arrows move within it; Enter opens the run.
    marks.nth(19).focus()
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.getAttribute('href')") == (
        f"/runs/{shown[18]['id']}"
    )
    expect(marks.nth(18)).to_have_attribute("title", re.compile(rf"run {shown[18]['id']} .* UTC$"))
    page.keyboard.press("Enter")
    expect(page.locator("#view h1")).to_have_text(f"Run {shown[18]['id']} of strip-odd")
    expect(job_row(page, "strip")).to_have_count(0)
    page.go_back()
    page.fill("#job-filter", "strip")
    page.select_option("#job-status", "never")
    expect(page.locator("#job-count")).to_have_text(f"1 of {MANY + 2} jobs")
    expect(job_row(page, "strip")).to_be_visible()


def test_adding_a_job_with_the_schedule_preview_and_errors(
    daemon: DaemonProcess, page: Page
) -> None:
    page.get_by_text("Add a job").click()
    form = page.locator("#add-form")
    for setting in ("name", "schedule", "command", "timezone", "timeout", "max_output"):
        expect(form.locator(f'label:text-is("{setting}")')).to_be_visible()
    form.get_by_label("name", exact=True).fill("nightly")
    form.get_by_label("schedule", exact=True).fill("0 24 * * *")
    preview = page.locator("#schedule-preview")
    expect(preview).to_have_text('hour field "24": 24 is out of range 0-23')
    form.get_by_label("schedule", exact=True).fill("30 2 * * *")
    form.get_by_label("timezone", exact=True).fill("Europe/Berlin")
    expect(preview).to_contain_text("At 02:30 (Europe/Berlin)")
    expect(preview.locator("li")).to_have_count(5)
    expect(preview.locator("li").first).to_contain_text("02:30 CE")
    form.get_by_label("timezone", exact=True).fill("Mars/Olympus")
    expect(preview).to_have_text('unknown time zone "Mars/Olympus"')
    form.get_by_label("timezone", exact=True).fill("Europe/Berlin")
    form.get_by_label("timeout", exact=True).fill("-5")
    form.get_by_role("button", name="Add job").click()
    # Each problem the daemon names shows under its field, which gets the focus.
    expect(page.locator("#error-command")).to_contain_text("command:")
    expect(form.get_by_label("command", exact=True)).to_be_focused()
    expect(form.get_by_label("command", exact=True)).to_have_attribute("aria-invalid", "true")
    form.get_by_label("command", exact=True).fill("echo night")
    form.get_by_role("button", name="Add job").click()
    expect(page.locator("#error-timeout")).to_contain_text("timeout: ")
    expect(page.locator("#error-command")).to_have_text("")
    daemon.api("GET", "/api/v1/jobs/nightly", 404)
    form.get_by_label("timeout", exact=True).fill("90s")
    form.get_by_label("env", exact=True).fill("GREETING=good night\nLANG=C")
    form.get_by_role("button", name="Add job").click()
    expect(page.locator("#error")).to_have_text("Added nightly.")
    created = daemon.api("GET", "/api/v1/jobs/nightly")
    assert created["timezone"] == "Europe/Berlin" and created["timeout"] == 90
    assert created["env"] == {"GREETING": "good night", "LANG": "C"}
    assert created["source"] == "api"
    expect(job_row(page, "nightly")).to_contain_text("02:30 CE")
