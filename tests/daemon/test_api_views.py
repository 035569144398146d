"""The API the web page reads: schedule previews, run filters and pages, each job's
latest runs, output downloads and tails, and the read-only viewer token."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon import sse
from tests.daemon.conftest import DaemonProcess, serving
from tests.helpers import run_cli

DAEMON_ZONE = "America/New_York"
VIEWER_TOKEN = "viewer-token-for-the-tests"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    state = tmp_path_factory.mktemp("views") / "state"
    env = {"TZ": DAEMON_ZONE, "EVERCRON_VIEWER_TOKEN": VIEWER_TOKEN}
    with serving(state, env=env) as started:
        yield started


@pytest.fixture(scope="module")
def viewer(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    with httpx.Client(base_url=daemon.url, headers=headers, timeout=30) as client:
        yield client


def _preview(daemon: DaemonProcess, expect: int = 200, **params: Any) -> Any:
    return daemon.api("GET", "/api/v1/schedule/preview", expect, params=params)


def test_a_preview_explains_and_lists_fire_times_with_dst_changes(daemon: DaemonProcess) -> None:
    shown = _preview(
        daemon,
        expression="0 9 * * *",
        timezone="Europe/Berlin",
        count=3,
        after="2024-03-29T12:00:00Z",
    )
    assert shown["expression"] == "0 9 * * *" and shown["timezone"] == "Europe/Berlin"
    assert shown["explanation"] == "At 09:00"
    assert [(f["local"], f["zone"], f["dst_change"]) for f in shown["fire_times"]] == [
        ("2024-03-30T09:00:00+01:00", "CET", False),
        ("2024-03-31T09:00:00+02:00", "CEST", True),
        ("2024-04-01T09:00:00+02:00", "CEST", False),
    ]
    assert shown["fire_times"][1]["at"] == "2024-03-31T07:00:00Z"


def test_a_preview_shows_a_time_the_gap_moved(daemon: DaemonProcess) -> None:
    shown = _preview(
        daemon,
        expression="30 2 * * *",
        timezone="Europe/Berlin",
        count=2,
        after="2024-03-30T12:00:00+01:00",
    )
    assert [(f["local"], f["dst_change"]) for f in shown["fire_times"]] == [
        ("2024-03-31T03:00:00+02:00", True),  # 02:30 does not exist that night
        ("2024-04-01T02:30:00+02:00", False),
    ]


def test_a_preview_defaults_to_five_times_in_the_daemons_zone(daemon: DaemonProcess) -> None:
    shown = _preview(daemon, expression="@hourly")
    assert shown["timezone"] == DAEMON_ZONE and len(shown["fire_times"]) == 5
    assert _preview(daemon, expression="@reboot")["fire_times"] == []


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"expression": "0 24 * * *"}, 'hour field "24": 24 is out of range 0-23'),
        ({"expression": "0 0 30 2 *"}, "the expression can never fire"),
        ({"expression": ""}, "expected 5, 6 or 7 fields"),
        ({"expression": "@daily", "timezone": "Mars/Olympus"}, 'unknown time zone "Mars/Olympus"'),
        ({"expression": "@daily", "timezone": "America"}, 'unknown time zone "America"'),
        ({"expression": "@daily", "timezone": "Etc"}, 'unknown time zone "Etc"'),
        ({"expression": "@daily", "timezone": "../etc/passwd"}, "unknown time zone"),
        ({"expression": "@daily", "timezone": "x" * 250}, "unknown time zone"),
        ({"expression": "@daily", "timezone": "x" * 300}, "timezone"),
        ({"expression": "@daily", "count": 0}, "count"),
        ({"expression": "@daily", "count": 101}, "count"),
        ({"expression": "@daily", "after": "yesterday"}, "after"),
        ({"expression": "@daily", "after": "9999-12-31T23:59:59-05:00"}, "after"),
        ({}, "expression"),
    ],
)
def test_a_bad_preview_is_a_422_with_the_reason(
    daemon: DaemonProcess, params: dict[str, Any], error: str
) -> None:
    answer = daemon.http.get("/api/v1/schedule/preview", params=params)
    assert answer.status_code == 422, answer.text
    assert error in answer.json()["error"]


def test_a_preview_needs_a_token(daemon: DaemonProcess) -> None:
    anonymous = httpx.get(f"{daemon.url}/api/v1/schedule/preview?expression=@daily")
    assert anonymous.status_code == 401


def _finished_runs(daemon: DaemonProcess, job: str, count: int) -> list[dict[str, Any]]:
    return [
        daemon.wait_for_run(daemon.api("POST", f"/api/v1/jobs/{job}/trigger", 202)["id"])
        for _ in range(count)
    ]


def test_runs_page_by_id_and_filter_by_time(daemon: DaemonProcess) -> None:
    daemon.add_job(name="paged", schedule="@yearly", command="true")
    runs = _finished_runs(daemon, "paged", 5)
    ids = [run["id"] for run in reversed(runs)]
    first = daemon.api("GET", "/api/v1/runs", params={"job": "paged", "limit": 2})
    second = daemon.api(
        "GET", "/api/v1/runs", params={"job": "paged", "limit": 2, "before": first[-1]["id"]}
    )
    third = daemon.api(
        "GET", "/api/v1/runs", params={"job": "paged", "limit": 2, "before": second[-1]["id"]}
    )
    assert [r["id"] for r in first + second + third] == ids
    since, until = runs[1]["scheduled_at"], runs[3]["scheduled_at"]
    window = daemon.api(
        "GET", "/api/v1/runs", params={"job": "paged", "since": since, "until": until}
    )
    assert [r["id"] for r in window] == [runs[2]["id"], runs[1]["id"]]
    naive = since.removesuffix("Z")  # no offset: UTC
    assert daemon.api("GET", "/api/v1/runs", params={"job": "paged", "since": naive}) == (
        daemon.api("GET", "/api/v1/runs", params={"job": "paged", "since": since})
    )


def test_retries_are_found_from_their_original(daemon: DaemonProcess) -> None:
    daemon.add_job(name="flaky", schedule="@yearly", command="exit 3", retries=1, retry_backoff=0)
    original = _finished_runs(daemon, "flaky", 1)[0]
    deadline = time.monotonic() + 30
    while not (retries := daemon.api("GET", "/api/v1/runs", params={"retry_of": original["id"]})):
        assert time.monotonic() < deadline, "no retry was claimed"
        time.sleep(0.05)
    assert [(r["attempt"], r["retry_of"]) for r in retries] == [(2, original["id"])]


@pytest.mark.parametrize(
    "params",
    [
        {"before": 0},
        {"before": 2**63},
        {"since": "soon"},
        {"until": "0001-01-01T00:00:00+05:00"},
        {"retry_of": "x"},
    ],
)
def test_bad_run_filters_are_a_422(daemon: DaemonProcess, params: dict[str, Any]) -> None:
    answer = daemon.http.get("/api/v1/runs", params=params)
    assert answer.status_code == 422, answer.text
    assert next(iter(params)) in answer.json()["error"]


def test_latest_runs_of_every_job_in_one_request(daemon: DaemonProcess) -> None:
    daemon.add_job(name="strip", schedule="@yearly", command="true")
    daemon.add_job(name="strip-idle", schedule="@yearly", command="true")
    runs = _finished_runs(daemon, "strip", 3)
    latest = {
        entry["job"]: entry["runs"]
        for entry in daemon.api("GET", "/api/v1/runs/latest", params={"per_job": 2})
    }
    assert latest["strip-idle"] == []
    assert [{k: v for k, v in entry.items() if k != "duration"} for entry in latest["strip"]] == [
        {key: run[key] for key in ("id", "status", "scheduled_at")} for run in reversed(runs[1:])
    ]
    for entry, run in zip(latest["strip"], reversed(runs[1:]), strict=True):
        started, finished = (
            dt.datetime.fromisoformat(run[k]) for k in ("started_at", "finished_at")
        )
        assert entry["duration"] == (finished - started).total_seconds()
    assert all(len(entries) <= 2 for entries in latest.values())
    jobs = daemon.api("GET", "/api/v1/jobs")
    assert sorted(latest) == sorted(job["name"] for job in jobs)
    for per_job in (0, 101, "x"):
        answer = daemon.http.get("/api/v1/runs/latest", params={"per_job": per_job})
        assert answer.status_code == 422 and "per_job" in answer.json()["error"]


def test_output_download_is_an_attachment_with_a_file_name(daemon: DaemonProcess) -> None:
    daemon.add_job(name="saved", schedule="@yearly", command=r"printf 'one\r\ntwo \377\n'")
    run = _finished_runs(daemon, "saved", 1)[0]
    answer = daemon.http.get(f"/api/v1/runs/{run['id']}/output", params={"download": 1})
    assert answer.status_code == 200 and answer.content == b"one\r\ntwo \xff\n"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="evercron-run-{run["id"]}-saved.log"'
    )
    assert answer.headers["content-type"] == "application/octet-stream"
    plain = daemon.http.get(f"/api/v1/runs/{run['id']}/output")
    assert plain.content == answer.content and "content-disposition" not in plain.headers
    both = daemon.http.get(f"/api/v1/runs/{run['id']}/output", params={"download": 1, "follow": 1})
    assert both.status_code == 422 and "download" in both.json()["error"]


def test_the_tail_of_an_output_starts_at_a_chunk(daemon: DaemonProcess) -> None:
    daemon.add_job(
        name="pieces",
        schedule="@yearly",
        command="printf aaaa; sleep 0.2; printf bbbb; sleep 0.2; printf cccc",
    )
    run = _finished_runs(daemon, "pieces", 1)[0]
    _, events = sse.follow(daemon.http, run["id"])
    chunks = [(e.id, e.data["text"]) for e in events if e.kind == "stdout"]
    assert "".join(text for _, text in chunks) == "aaaabbbbcccc"
    for tail in (1, 4, 5, 11, 12, 100):
        first = max((o for o, _ in chunks if o <= 12 - tail), default=0)
        expected = "aaaabbbbcccc"[first:]
        raw = daemon.http.get(f"/api/v1/runs/{run['id']}/output", params={"tail": tail})
        assert raw.text == expected, tail
        response, tailed = sse.follow(daemon.http, run["id"], params={"tail": tail})
        assert response.status_code == 200
        assert [e.kind for e in tailed if e.kind != "stdout"] == ["end"]
        assert sse.output_of(tailed) == expected.encode()
    # Resuming wins over the tail.
    _, resumed = sse.follow(daemon.http, run["id"], str(chunks[0][0]), params={"tail": 1})
    assert sse.output_of(resumed) == "aaaabbbbcccc"[len(chunks[0][1]) :].encode()
    for bad in (0, -1, "x"):
        answer = daemon.http.get(f"/api/v1/runs/{run['id']}/output", params={"tail": bad})
        assert answer.status_code == 422 and "tail" in answer.json()["error"]


def test_the_viewer_token_reads_everything_but_secrets(
    daemon: DaemonProcess, viewer: httpx.Client
) -> None:
    daemon.add_job(
        name="secretive",
        schedule="@yearly",
        command="echo $PASSWORD | wc -c",
        env={"PASSWORD": "hunter2-value", "MODE": "fast"},
    )
    run = _finished_runs(daemon, "secretive", 1)[0]
    one = viewer.get("/api/v1/jobs/secretive")
    listed = viewer.get("/api/v1/jobs")
    for answer in (one, listed):
        assert answer.status_code == 200 and "hunter2-value" not in answer.text
    assert one.json()["env"] == {"PASSWORD": "(hidden)", "MODE": "(hidden)"}
    entry = next(j for j in listed.json() if j["name"] == "secretive")
    assert entry["env"].keys() == {"PASSWORD", "MODE"}
    assert daemon.api("GET", "/api/v1/jobs/secretive")["env"]["PASSWORD"] == "hunter2-value"
    for path in (
        "/api/v1/runs",
        f"/api/v1/runs/{run['id']}",
        f"/api/v1/runs/{run['id']}/output",
        f"/api/v1/runs/{run['id']}/output?follow=1",
        f"/api/v1/runs/{run['id']}/output?download=1",
        "/api/v1/runs/latest",
        "/api/v1/schedule/preview?expression=@daily",
        "/api/v1/openapi.json",
        "/metrics",
    ):
        assert viewer.get(path).status_code == 200, path
    status = viewer.get("/api/v1/status").json()
    assert status["access"] == "read-only" and status["timezone"] == DAEMON_ZONE
    assert daemon.api("GET", "/api/v1/status")["access"] == "full"


def test_every_change_with_the_viewer_token_is_a_403(
    daemon: DaemonProcess, viewer: httpx.Client
) -> None:
    daemon.add_job(name="guarded", schedule="@yearly", command="sleep 30")
    running = daemon.api("POST", "/api/v1/jobs/guarded/trigger", 202)
    try:
        job = {"name": "sneaky", "schedule": "@daily", "command": "true"}
        for method, path, body in (
            ("POST", "/api/v1/jobs", job),
            ("PATCH", "/api/v1/jobs/guarded", {"command": "true"}),
            ("DELETE", "/api/v1/jobs/guarded", None),
            ("POST", "/api/v1/jobs/guarded/trigger", None),
            ("POST", "/api/v1/jobs/guarded/pause", None),
            ("POST", "/api/v1/jobs/guarded/resume", None),
            ("POST", f"/api/v1/runs/{running['id']}/kill", None),
            ("POST", "/api/v1/upgrade", None),
            ("POST", "/api/v1/stop", None),
            ("PUT", "/api/v1/jobs/guarded", job),
        ):
            answer = viewer.request(method, path, json=body)
            assert answer.status_code == 403, (method, path, answer.text)
            assert "viewer token can only read" in answer.json()["error"]
        after = daemon.api("GET", "/api/v1/jobs/guarded")
        assert after["command"] == "sleep 30" and after["paused"] is False
        daemon.api("GET", "/api/v1/jobs/sneaky", 404)
        assert daemon.api("GET", f"/api/v1/runs/{running['id']}")["status"] == "running"
        assert len(daemon.api("GET", "/api/v1/runs", params={"job": "guarded"})) == 1
        wrong = viewer.get("/api/v1/jobs", headers={"Authorization": "Bearer not-it"})
        assert wrong.status_code == 401
    finally:
        daemon.api("POST", f"/api/v1/runs/{running['id']}/kill", 202)
        daemon.wait_for_run(running["id"])


def test_the_viewer_token_from_the_config_file(start_daemon: Any, tmp_path: Path) -> None:
    config = tmp_path / "evercron.toml"
    config.write_text('[daemon]\nviewer_token = "from-the-config-file"\n')
    started: DaemonProcess = start_daemon("--config", str(config))
    headers = {"Authorization": "Bearer from-the-config-file"}
    assert httpx.get(f"{started.url}/api/v1/jobs", headers=headers).status_code == 200
    refused = httpx.post(f"{started.url}/api/v1/stop", headers=headers)
    assert refused.status_code == 403


def test_a_viewer_token_equal_to_the_api_token_is_refused(tmp_path: Path) -> None:
    done = run_cli(
        "serve",
        *("--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:0"),
        env={"EVERCRON_TOKEN": "same-token-twice", "EVERCRON_VIEWER_TOKEN": "same-token-twice"},
    )
    assert done.returncode != 0
    assert "the viewer token must differ from the API token" in done.stderr
    assert "Traceback" not in done.stderr
