"""Bad input through the API: a clear 422 naming the field, never a 500 or a reset."""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli

JOB = {"name": "j", "schedule": "@yearly", "command": "true"}


def test_zone_names_that_are_no_zone(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    for name in ("America", "Etc", "A" * 300):
        response = daemon.http.post("/api/v1/jobs", json={**JOB, "timezone": name})
        assert response.status_code == 422, response.text
        assert response.json() == {"error": f'timezone: unknown time zone "{name}"'}
    # The same connection still serves (a 500 used to reset it).
    assert daemon.api("GET", "/api/v1/jobs") == []


def _send(daemon: DaemonProcess, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """Send `body` as JSON with lone surrogates as \\u escapes (as any JSON client may)."""
    content = json.dumps(body).encode()  # ensure_ascii: "\\udfff" stays an escape
    headers = {"content-type": "application/json"}
    return daemon.http.request(method, path, content=content, headers=headers)


def test_text_that_is_not_unicode_is_refused_and_never_stored(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(**JOB)
    cases = {
        "env": {"env": {"A": "\udfff"}},
        "env name": {"env": {"\udfff": "x"}},
        "cwd": {"cwd": "/tmp/\udfff"},
        "command": {"command": "echo \udfff"},
        "description": {"description": "\ud800"},
        "shell": {"shell": "/bin/\udfff"},
        "name": {"name": "\udfff"},
        "schedule": {"schedule": "@daily \udfff"},
        "timezone": {"timezone": "Europe/\udfff"},
        "NUL": {"description": "a\0b"},
    }
    for label, change in cases.items():
        response = _send(daemon, "POST", "/api/v1/jobs", {**JOB, "name": "k", **change})
        assert response.status_code == 422, (label, response.text)
        error = response.json()["error"]
        field = label.split()[0] if label != "NUL" else "description"
        assert error.startswith(f"{field}: "), (label, error)
        if label != "name":
            patched = _send(daemon, "PATCH", "/api/v1/jobs/j", change)
            assert patched.status_code == 422, (label, patched.text)
            assert patched.json()["error"].startswith(f"{field}: "), (label, patched.text)
    assert [job["name"] for job in daemon.api("GET", "/api/v1/jobs")] == ["j"]
    assert daemon.api("GET", "/api/v1/jobs/j")["env"] == {}


def test_a_job_row_that_cannot_be_read_breaks_nothing(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    for name in ("j", "broken", "left"):
        daemon.add_job(**{**JOB, "name": name})
    # As a release that let a lone surrogate through stored them (or a hand-made edit).
    with sqlite3.connect(daemon.state_dir / "evercron.db") as db:
        for name in ("broken", "left"):
            definition = json.dumps({**JOB, "name": name, "env": {"A": "\udfff"}})
            db.execute("UPDATE jobs SET definition = ? WHERE name = ?", (definition, name))
    assert [job["name"] for job in daemon.api("GET", "/api/v1/jobs")] == ["j"]
    listed = run_cli("jobs", "--json", "--state-dir", str(daemon.state_dir))
    assert listed.returncode == 0 and [j["name"] for j in json.loads(listed.stdout)] == ["j"]
    daemon.api("GET", "/api/v1/status")  # answers (it counts rows, readable or not)
    one = daemon.http.get("/api/v1/jobs/broken")
    assert one.status_code == 409
    assert one.json()["error"].startswith(
        "job broken: the stored definition cannot be read: env: A is not valid Unicode text"
    )
    assert "job broken left out of listings: the stored definition" in daemon.log()
    # Such a row can be deleted, and the name used again.
    daemon.api("DELETE", "/api/v1/jobs/broken", 204)
    daemon.add_job(**{**JOB, "name": "broken"})
    # A restart removes what is left of such rows, and says so.
    assert daemon.stop() == 0
    daemon = start_daemon()
    assert [job["name"] for job in daemon.api("GET", "/api/v1/jobs")] == ["broken", "j"]
    assert "job left removed: the stored definition cannot be read" in daemon.log()


def test_concurrent_creations_of_one_name_create_it_once(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    count = 16
    ready = threading.Barrier(count)

    def create(index: int) -> int:
        with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
            client.get("/healthz")  # connected before the barrier: the posts race
            ready.wait(timeout=30)
            body = {**JOB, "command": f"echo {index}"}
            return client.post("/api/v1/jobs", json=body, timeout=30).status_code

    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(create, range(count)))
    assert sorted(statuses) == [201] + [409] * (count - 1), statuses
    winner = statuses.index(201)
    assert daemon.api("GET", "/api/v1/jobs/j")["command"] == f"echo {winner}"
