"""The web page in a real headless Chromium (Debian's, driven by Playwright) against a
real daemon: serving, signing in, deep links, text-only insertion, the strict CSP, the
phone width, dark mode and the keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.daemon.conftest import DaemonProcess, serving
from tests.daemon.web import job_row, opened, output_text, page_width_fits, sign_in_link
from tests.helpers import run_cli

CONFIG = """
[[job]]
name = "hello"
schedule = "0 0 1 1 *"
timezone = "Europe/Berlin"
command = "echo hello; sleep 0.3; echo oops >&2; echo bye"

[[job]]
name = "markup"
schedule = "0 0 1 1 *"
command = "echo '<img src=x onerror=window.pwned=1>'"
description = "<b onmouseover=window.pwned=2>bold</b>"
"""
PAGES = ("/", "/jobs/hello", "/runs", "/runs/1", "/nodes", "/notifications")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("web")
    config = folder / "evercron.toml"
    config.write_text(CONFIG)
    with serving(folder / "state", "--config", str(config)) as started:
        run = started.api("POST", "/api/v1/jobs/hello/trigger", 202)
        started.wait_for_run(run["id"])
        yield started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser) as fresh:
        yield fresh


def test_the_page_and_its_files_need_no_token_but_the_api_does(daemon: DaemonProcess) -> None:
    with httpx.Client(base_url=daemon.url) as anonymous:
        for path in PAGES:
            html = anonymous.get(path)
            assert html.status_code == 200 and "text/html" in html.headers["content-type"]
            csp = html.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp
            assert daemon.token not in html.text
        for path, kind in (("/ui/main.js", "javascript"), ("/ui/app.css", "css")):
            answer = anonymous.get(path)
            assert answer.status_code == 200 and kind in answer.headers["content-type"]
        missing = anonymous.get("/ui/nothing.js")
        assert missing.status_code == 404 and "error" in missing.json()
        assert anonymous.get("/ui/..%2Fweb.py").status_code == 404
        assert anonymous.get("/api/v1/jobs").status_code == 401
    assert "/ui/{name}" not in daemon.api("GET", "/api/v1/openapi.json")["paths"]


def test_the_web_command_prints_a_link_that_signs_in(daemon: DaemonProcess, page: Page) -> None:
    assert f"web page: {daemon.url}/ (`evercron web`" in daemon.log()
    link = sign_in_link(daemon)
    assert link.startswith(daemon.url + "/#token=")
    plain = run_cli("web", "--state-dir", str(daemon.state_dir))
    assert plain.returncode == 0 and plain.stdout.strip() == link
    page.goto(link)
    expect(job_row(page, "hello")).to_contain_text("0 0 1 1 *")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    expect(page.locator("#status")).to_contain_text("2 jobs")
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
    expect(job_row(page, "hello")).to_be_visible()
    page.click("#sign-out")
    expect(page.locator("#login")).to_be_visible()
    page.reload()
    expect(page.locator("#login")).to_be_visible()  # signed out for good


def test_deep_links_survive_a_reload_and_are_shared(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon, "/jobs/hello"))
    expect(page.locator("#view h1")).to_have_text("hello")
    assert page.url == f"{daemon.url}/jobs/hello"
    page.reload()
    expect(page.locator("#view h1")).to_have_text("hello")  # the tab keeps its token
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page).to_have_url(f"{daemon.url}/runs")
    expect(page.locator("#view h1")).to_have_text("Runs")
    page.go_back()
    expect(page.locator("#view h1")).to_have_text("hello")
    # Shared with someone else: they sign in, then see the page the link names.
    with opened(page.context.browser) as other:  # type: ignore[arg-type]
        other.goto(f"{daemon.url}/runs/1")
        other.fill("#token", daemon.token)
        other.click("#login-form button")
        expect(other.locator("#view h1")).to_contain_text("Run 1 of hello")
        other.goto(f"{daemon.url}/runs/99999")
        expect(other.locator("#view")).to_contain_text("no run 99999")
        other.goto(f"{daemon.url}/jobs/nobody")
        expect(other.locator("#view")).to_contain_text('no job named "nobody"')


def test_a_page_still_loading_never_draws_over_the_one_gone_back_to(
    daemon: DaemonProcess, page: Page
) -> None:
    page.goto(sign_in_link(daemon, "/runs"))
    expect(page.locator("#view h1")).to_have_text("Runs")
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(f"{daemon.url}/api/v1/runs/1", hold)
    page.locator('#runs a[href="/runs/1"]').click()
    expect(page).to_have_url(f"{daemon.url}/runs/1")
    for _ in range(500):  # until the run's page asks for its run (held meanwhile)
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1
    page.go_back()
    expect(page.locator("#view h1")).to_have_text("Runs")
    held[0].continue_()
    # The run's page sets the tab's title as it draws itself: it has finished loading.
    expect(page).to_have_title("run 1 of hello · evercron")
    expect(page.locator("#view h1")).to_have_text("Runs")
    expect(page.locator("#run-details")).to_have_count(0)
    assert page.url == f"{daemon.url}/runs"


def test_a_slow_daemon_gets_one_refresh_at_a_time(daemon: DaemonProcess, page: Page) -> None:
    page.clock.install()
    page.goto(sign_in_link(daemon, "/runs"))
    expect(page.locator("#view h1")).to_have_text("Runs")
    held: list[Route] = []

    def hold(route: Route) -> None:  # a daemon that does not answer
        held.append(route)

    page.route(f"{daemon.url}/api/v1/status", hold)
    for _ in range(50):  # ticks of the page's refresh timer until one is under way
        page.clock.run_for(3_000)
        page.wait_for_timeout(100)  # (a request the page made reaches the route)
        if held:
            break
    page.clock.run_for(3_000 * 4)  # four ticks more while it waits
    page.wait_for_timeout(300)
    assert len(held) == 1  # not one more per tick: they would take every connection
    held[0].continue_()
    page.unroute(f"{daemon.url}/api/v1/status")
    page.clock.run_for(3_000)
    expect(page.locator("#status")).to_contain_text("jobs")


def test_names_commands_and_output_are_shown_as_text(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    expect(job_row(page, "markup")).to_contain_text("<img src=x onerror=window.pwned=1>")
    job_row(page, "markup").get_by_role("link", name="markup").click()
    expect(page.locator('#settings dd[data-setting="description"]')).to_have_text(
        "<b onmouseover=window.pwned=2>bold</b>"
    )
    page.locator("#job-actions").get_by_role("button", name="Run now").click()
    expect(page.locator("#output-state")).to_contain_text("succeeded")
    assert output_text(page) == "<img src=x onerror=window.pwned=1>\n"
    assert page.locator("img").count() == 0 and page.locator("b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_phone_has_no_sideways_scrolling(daemon: DaemonProcess, browser: Browser) -> None:
    with opened(browser, viewport={"width": 375, "height": 740}, is_mobile=True) as phone:
        phone.goto(sign_in_link(daemon))
        expect(job_row(phone, "hello")).to_be_visible()
        for path, ready in (
            ("/", "#jobs tbody tr"),
            ("/jobs/hello", "#settings dd"),
            ("/runs", "#runs tbody tr"),
            ("/runs/1", "#output-state:has-text('succeeded')"),
        ):
            phone.goto(daemon.url + path)
            expect(phone.locator(ready).first).to_be_visible()
            assert page_width_fits(phone), path
        phone.goto(daemon.url + "/")
        phone.get_by_text("Add a job").click()
        expect(phone.locator("#add-form")).to_be_visible()
        assert page_width_fits(phone)


def test_dark_mode_follows_the_system(daemon: DaemonProcess, browser: Browser) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        with opened(browser, color_scheme=scheme) as page:
            page.goto(sign_in_link(daemon))
            expect(job_row(page, "hello")).to_be_visible()
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert backgrounds["light"] == "rgb(255, 255, 255)"
    assert backgrounds["dark"] != backgrounds["light"]
    red, green, blue = (int(x) for x in backgrounds["dark"][4:-1].split(","))
    assert red + green + blue < 150  # dark


def test_the_keyboard_reaches_every_page_and_action(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    expect(job_row(page, "hello")).to_be_visible()

    def tab_to(selector: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to('#jobs a[href="/jobs/hello"]')
    page.keyboard.press("Enter")
    expect(page.locator("#view h1")).to_have_text("hello")
    tab_to("#job-actions button")
    assert page.evaluate("document.activeElement.textContent") == "Run now"
    page.keyboard.press("Enter")
    expect(page.locator("#view h1")).to_contain_text("Run ")
    expect(page.locator("#output-state")).to_contain_text("succeeded")
    tab_to("#output-search")
    page.keyboard.type("oops")
    expect(page.locator("#search-count")).to_have_text("1 of 1")
    tab_to("#download")
    tab_to('nav a[href="/runs"]', limit=80)  # Tab wraps around to the top
    page.keyboard.press("Enter")
    expect(page.locator("#view h1")).to_have_text("Runs")


ANSI_CASES = """async () => {
    const { AnsiText } = await import("/ui/ansi.js");
    const read = (...chunks) => {
        const reader = new AnsiText();
        return chunks.flatMap((chunk) => reader.push(chunk)).map(
            (piece) => [piece.text, piece.style && Object.fromEntries(
                Object.entries(piece.style).filter(([, v]) => v !== null && v !== false))]);
    };
    return {
        split: read("a\\x1b[3", "1mred\\x1b", "[0m b"),
        colon: read("\\x1b[38:2::1:2:3mrgb\\x1b[38:5:9m idx"),
        semi: read("\\x1b[38;2;4;5;6;1mboth\\x1b[22m thin"),
        inverse: read("\\x1b[7mswap\\x1b[27mback"),
        other: read("x\\x1b[2J\\x1b[1;1H\\x1b]8;;http://e\\x1b\\\\link\\x1b]8;;\\x1b\\\\\\x07\\x1b(By"),
        private: read("\\x1b[?25lhidden cursor\\x1b[?25h"),
        bright: read("\\x1b[91;104mbright"),
    };
}"""


def test_the_ansi_reader(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    expect(job_row(page, "hello")).to_be_visible()
    read = page.evaluate(ANSI_CASES)
    assert read["split"] == [["a", None], ["red", {"fg": 1}], [" b", None]]
    assert read["colon"] == [["rgb", {"fg": "rgb(1,2,3)"}], [" idx", {"fg": 9}]]
    assert read["semi"] == [
        ["both", {"fg": "rgb(4,5,6)", "bold": True}],
        [" thin", {"fg": "rgb(4,5,6)"}],
    ]
    assert read["inverse"] == [["swap", {"inverse": True}], ["back", None]]
    assert read["other"] == [["xlinky", None]]
    assert read["private"] == [["hidden cursor", None]]
    assert read["bright"] == [["bright", {"fg": 9, "bg": 12}]]


def test_output_text_restores_bytes_across_chunks(daemon: DaemonProcess, page: Page) -> None:
    page.goto(sign_in_link(daemon))
    expect(job_row(page, "hello")).to_be_visible()
    shown = page.evaluate(
        """async () => {
            const { OutputText } = await import("/ui/stream.js");
            const text = new OutputText();
            return [
                text.decode("stdout", "caf\\udcc3"),
                text.decode("stderr", "err\\udce2"),
                text.decode("stdout", "\\udca9 ok \\ud83d\\udc80 \\udcff!"),
                text.decode("stderr", "\\udc82\\udcac"),
                text.flush(),
            ];
        }"""
    )
    assert shown == [
        "caf",
        "err",
        "\u00e9 ok \U0001f480 \ufffd!",
        "\u20ac",
        {"stdout": "", "stderr": ""},
    ]
