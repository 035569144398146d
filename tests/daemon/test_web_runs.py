"""The run list (`/runs`) and a run's page (`/runs/{id}`) in Chromium: filters and pages,
the run's details and attempt chain, its output with ANSI colours, stdout and stderr told
apart, live follow (across a hot upgrade too), pause, search, download, kill, and a 50 MB
output shown by its head and tail."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.daemon.conftest import DaemonProcess, serving
from tests.daemon.web import opened, output_text, sign_in_link

BIG_LINES = 550_000  # 100 bytes each: 55 MB
# Python writes the big output fast; printf in sh would take minutes.
BIG = (
    'python3 -c "import sys; w = sys.stdout.write; '
    f"[w('line %08d ' % i + 'x' * 85 + '\\n') for i in range({BIG_LINES})]\""
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("web-runs")
    with serving(folder / "state") as started:
        yield started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser) as fresh:
        yield fresh


def _run(daemon: DaemonProcess, job: str) -> dict[str, Any]:
    return daemon.wait_for_run(daemon.api("POST", f"/api/v1/jobs/{job}/trigger", 202)["id"])


def _add(daemon: DaemonProcess, name: str, command: str, **settings: Any) -> None:
    daemon.add_job(name=name, schedule="@yearly", command=command, **settings)


def test_the_run_list_filters_and_pages(daemon: DaemonProcess, page: Page) -> None:
    _add(daemon, "list-ok", "true")
    _add(daemon, "list-bad", "false")
    ok = [_run(daemon, "list-ok") for _ in range(3)]
    bad = [_run(daemon, "list-bad") for _ in range(2)]
    page.goto(sign_in_link(daemon, "/runs"))
    rows = page.locator("#runs tbody tr")
    expect(rows.first).to_have_attribute("data-run", str(bad[-1]["id"]))
    expect(rows.first).to_contain_text(re.compile(r"\d\d:\d\d:\d\d UTC"))
    page.fill("#runs-job", "list-ok")
    page.locator("#runs-job").dispatch_event("change")
    expect(rows).to_have_count(3)
    assert page.url.endswith("/runs?job=list-ok")
    page.fill("#runs-job", "")
    page.select_option("#runs-status", "failed")
    expect(rows.first).to_have_attribute("data-status", "failed")
    assert {row.get_attribute("data-status") for row in rows.all()} == {"failed"}
    page.select_option("#runs-status", "")
    # Scheduled since the second ok run, before the first bad one (UTC).
    since = dt.datetime.fromisoformat(ok[1]["scheduled_at"]).strftime("%Y-%m-%dT%H:%M:%S")
    page.fill("#runs-job", "list-ok")
    page.fill("#runs-since", since)
    page.locator("#runs-since").dispatch_event("change")
    expect(rows).to_have_count(2 if ok[0]["scheduled_at"][:19] < since else 3)
    page.reload()
    expect(page.locator("#runs-since")).to_have_value(since)
    page.fill("#runs-since", "")
    page.fill("#runs-job", "")
    page.locator("#runs-job").dispatch_event("change")
    expect(rows.first).to_have_attribute("data-run", str(bad[-1]["id"]))


def test_a_run_shows_its_details_and_attempt_chain(daemon: DaemonProcess, page: Page) -> None:
    _add(daemon, "retried", "echo trying; exit 3", retries=2, retry_backoff=0)
    first = _run(daemon, "retried")
    chain: list[dict[str, Any]] = []
    for _ in range(600):
        chain = daemon.api("GET", "/api/v1/runs", params={"retry_of": first["id"]})
        if len(chain) == 2 and all(run["status"] != "running" for run in chain):
            break
        page.wait_for_timeout(50)
    second, third = reversed(chain)
    page.goto(sign_in_link(daemon, f"/runs/{second['id']}"))
    details = page.locator("#run-details")
    for name, value in (
        ("status", "failed"),
        ("trigger", "retry"),
        ("attempt", "2"),
        ("exit code", "3"),
        ("job", "retried"),
    ):
        expect(details.locator(f'dd[data-field="{name}"]')).to_have_text(value)
    for name in ("scheduled", "started", "finished"):
        expect(details.locator(f'dd[data-field="{name}"] time')).to_be_visible()
    expect(details.locator('dd[data-field="CPU"]')).to_contain_text("user")
    expect(details.locator('dd[data-field="memory"]')).to_contain_text("peak resident")
    attempts = page.locator("#attempts")
    expect(attempts.locator('[aria-current="page"]')).to_have_text(f"#{second['id']} (attempt 2)")
    attempts.get_by_role("link", name=f"#{third['id']} (attempt 3)").click()
    expect(page.locator("#view h1")).to_have_text(f"Run {third['id']} of retried")
    page.locator("#attempts").get_by_role("link", name=f"#{first['id']} (attempt 1)").click()
    expect(page.locator("#view h1")).to_have_text(f"Run {first['id']} of retried")
    expect(page.locator("#attempts a")).to_have_count(2)


def test_ansi_colours_and_the_two_streams(daemon: DaemonProcess, page: Page) -> None:
    _add(
        daemon,
        "colourful",
        r"printf 'plain \033[1;31mbold red\033[0m \033[38;5;208morange\033[39m "
        r"\033[48;2;0;0;255mon blue\033[m \033[2Kerased\033]0;title\007 end\n'; "
        r"printf '\033[33mwarn\033[0m\n' >&2",
    )
    run = _run(daemon, "colourful")
    page.goto(sign_in_link(daemon, f"/runs/{run['id']}"))
    expect(page.locator("#output-state")).to_have_text("ended: succeeded")
    text = output_text(page)
    assert "\x1b" not in text and "[1;31m" not in text and "title" not in text
    assert "plain bold red orange on blue erased end\n" in text
    red = page.locator("pre.output .head span", has_text="bold red")
    expect(red).to_have_class("ansi-fg-1 ansi-bold")
    assert red.evaluate("e => getComputedStyle(e).fontWeight") == "700"
    orange = page.locator("pre.output .head span", has_text="orange")
    assert orange.evaluate("e => e.style.color") == "rgb(255, 135, 0)"
    blue = page.locator("pre.output .head span", has_text="on blue")
    assert blue.evaluate("e => e.style.backgroundColor") == "rgb(0, 0, 255)"
    warn = page.locator("pre.output .stderr", has_text="warn")
    expect(warn).to_have_class("stderr ansi-fg-3")
    # stdout and stderr look different.
    stdout_colour = page.locator("pre.output").evaluate("e => getComputedStyle(e).color")
    stderr_colour = page.locator("pre.output .stderr").last.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    assert stderr_colour not in {"rgba(0, 0, 0, 0)", stdout_colour}


def test_live_output_follow_and_pause(daemon: DaemonProcess, page: Page, tmp_path: Path) -> None:
    go = tmp_path / "go"
    _add(
        daemon,
        "live",
        f"seq 1 400; while [ ! -e {go} ]; do sleep 0.02; done; echo after the flag",
    )
    run = daemon.api("POST", "/api/v1/jobs/live/trigger", 202)
    page.goto(sign_in_link(daemon, f"/runs/{run['id']}"))
    expect(page.locator("#output-state")).to_have_text("live")
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("pre.output")).to_contain_text("\n400\n")
    at_bottom = "e => Math.abs(e.scrollTop + e.clientHeight - e.scrollHeight) < 4"
    output = page.locator("pre.output")
    assert output.evaluate(at_bottom)
    output.hover()
    page.mouse.wheel(0, -300)  # scrolling up pauses following
    expect(page.locator("#follow")).to_have_attribute("aria-pressed", "false")
    go.touch()
    expect(output).to_contain_text("after the flag")
    expect(page.locator("#output-state")).to_have_text("ended: succeeded")
    assert not output.evaluate(at_bottom)  # paused: it stayed where the reader was
    page.click("#follow")
    expect(page.locator("#follow")).to_have_attribute("aria-pressed", "true")
    assert output.evaluate(at_bottom)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    assert output_text(page) == "".join(f"{n}\n" for n in range(1, 401)) + "after the flag\n"


def test_search_and_download(daemon: DaemonProcess, page: Page) -> None:
    _add(daemon, "findable", r"for i in $(seq 1 300); do echo line $i; done; printf 'raw \377\n'")
    run = _run(daemon, "findable")
    page.goto(sign_in_link(daemon, f"/runs/{run['id']}"))
    expect(page.locator("#output-state")).to_have_text("ended: succeeded")
    page.fill("#output-search", "LINE 2")
    expect(page.locator("#search-count")).to_have_text("1 of 111")  # 2, 20-29, 200-299
    assert page.evaluate("CSS.highlights.get('evercron-search').size") == 111
    page.keyboard.press("Enter")
    expect(page.locator("#search-count")).to_have_text("2 of 111")
    page.get_by_role("button", name="previous match").click()
    page.get_by_role("button", name="previous match").click()
    expect(page.locator("#search-count")).to_have_text("111 of 111")
    current = page.evaluate("[...CSS.highlights.get('evercron-current')][0].toString()")
    assert current == "line 2"
    with page.expect_download() as waiting:
        page.click("#download")
    download = waiting.value
    assert download.suggested_filename == f"evercron-run-{run['id']}-findable.log"
    saved = Path(download.path()).read_bytes()
    assert saved == daemon.http.get(f"/api/v1/runs/{run['id']}/output").content
    assert saved.endswith(b"raw \xff\n")


def test_kill_from_the_run_page(daemon: DaemonProcess, page: Page) -> None:
    _add(daemon, "sleeper", "echo sleeping; sleep 60")
    run = daemon.api("POST", "/api/v1/jobs/sleeper/trigger", 202)
    page.goto(sign_in_link(daemon, f"/runs/{run['id']}"))
    expect(page.locator("pre.output")).to_contain_text("sleeping")
    page.locator("#run-actions").get_by_role("button", name="Kill").click()
    expect(page.locator("#output-state")).to_have_text("ended: killed")
    assert daemon.wait_for_run(run["id"])["status"] == "killed"
    expect(page.locator("#run-actions button")).to_have_count(0)


def test_a_50_mb_output_shows_its_head_and_tail(daemon: DaemonProcess, page: Page) -> None:
    _add(daemon, "huge", BIG, max_output="64MiB")
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/huge/trigger", 202)["id"], 120)
    assert run["output_bytes"] == BIG_LINES * 100 and not run["output_truncated"]
    page.goto(sign_in_link(daemon, f"/runs/{run['id']}"))
    output = page.locator("pre.output")
    expect(page.locator("#output-state")).to_have_text("ended: succeeded")
    expect(output).to_contain_text(f"line {BIG_LINES - 1:08d} ")  # the very end
    expect(output.locator(".gap")).to_contain_text("The middle of this 52.5 MiB output")
    text = output_text(page)
    assert text.startswith("line 00000000 x")
    assert text.endswith(f"line {BIG_LINES - 1:08d} {'x' * 85}\n")
    assert len(text) < 3 * 2**20  # a few MB in the page, not 50
    # The tab answers at once and its search works.
    page.fill("#output-search", f"line {BIG_LINES - 2:08d}")
    expect(page.locator("#search-count")).to_have_text("1 of 1")


def test_following_ten_thousand_lines_a_second(
    daemon: DaemonProcess, page: Page, tmp_path: Path
) -> None:
    # 3 s at 10,000 lines a second, flushed line by line: 3.3 MB through the live stream,
    # once the page follows (a page slow to load on a busy machine must not miss it).
    lines = 30_000
    go = tmp_path / "go"
    fast = (
        'python3 -c "import os, sys, time\n'
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        f"for i in range({lines}):\n"
        "    print('fast %06d ' % i + 'y' * 96, flush=True)\n"
        '    i % 100 == 99 and time.sleep(0.01)"'
    )
    _add(daemon, "fast", fast, max_output="64KiB")
    run = daemon.api("POST", "/api/v1/jobs/fast/trigger", 202)
    page.goto(sign_in_link(daemon, f"/runs/{run['id']}"))
    expect(page.locator("#output-state")).to_have_text("live")
    go.touch()
    # While it streams, the page keeps answering and rendering frames.
    for _ in range(5):
        assert page.evaluate("new Promise(r => requestAnimationFrame(() => r(1)))") == 1
    expect(page.locator("#output-state")).to_have_text("ended: succeeded", timeout=60_000)
    output = page.locator("pre.output")
    expect(output).to_contain_text(f"fast {lines - 1:06d} ")
    text = output_text(page)
    assert text.startswith("fast 000000 ")
    assert len(text) < 3 * 2**20
    expect(output.locator(".gap")).to_contain_text("characters are not shown here")


def test_a_followed_run_resumes_across_a_hot_upgrade(
    start_daemon: Any, browser: Browser, tmp_path: Path
) -> None:
    upgraded: DaemonProcess = start_daemon(state_dir=tmp_path / "upgrading")
    upgraded.add_job(
        name="talk",
        schedule="@yearly",
        command="for i in $(seq 1 40); do echo line $i; sleep 0.05; done",
    )
    run = upgraded.api("POST", "/api/v1/jobs/talk/trigger", 202)
    with opened(browser) as page:
        page.goto(sign_in_link(upgraded, f"/runs/{run['id']}"))
        expect(page.locator("pre.output")).to_contain_text("line 1\n")
        upgraded.upgrade()
        expect(page.locator("#output-state")).to_have_text("ended: succeeded", timeout=30_000)
        assert output_text(page) == "".join(f"line {i}\n" for i in range(1, 41))
    assert upgraded.process.wait(timeout=30) == 0


def test_output_bytes_show_as_written(daemon: DaemonProcess, page: Page) -> None:
    # A euro sign split across two writes, a skull (its UTF-16 low half is U+DC80, the
    # first code of an escaped byte), an invalid byte, a CR LF and SSE-like text.
    _add(
        daemon,
        "bytes",
        r"printf 'split \342\202'; sleep 0.3; "
        r"printf '\254 \360\237\222\200 \377 event: end\r\ndata: x\n'",
    )
    run = _run(daemon, "bytes")
    page.goto(sign_in_link(daemon, f"/runs/{run['id']}"))
    expect(page.locator("#output-state")).to_have_text("ended: succeeded")
    assert output_text(page) == "split \u20ac \U0001f480 \ufffd event: end\ndata: x\n"
