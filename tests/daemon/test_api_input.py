"""Bad input through the API: a clear 422 naming the field, never a 500 or a reset."""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

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


# A job's fields with values JSON can carry that must not be taken, and the error.
WRONG_VALUES = [
    ({"timeout": True}, "timeout: expected a duration: seconds or a string like 1.5s"),
    ({"timeout": 1e308}, "timeout: invalid duration 1e+308: at most 31536000s (a year)"),
    ({"timeout": "99999999d"}, "timeout: invalid duration '99999999d': at most 31536000s"),
    ({"timeout": float("nan")}, "timeout: expected a duration: seconds or a string like"),
    ({"jitter": float("-inf")}, "jitter: expected a duration: seconds or a string like"),
    ({"jitter": 1e20}, "jitter: invalid duration 1e+20: at most 31536000s (a year)"),
    ({"retry_backoff": 1e300}, "retry_backoff: invalid duration 1e+300: at most 31536000s"),
    ({"kill_grace": 10**400}, "kill_grace: invalid duration 1000000000000000000000000"),
    ({"misfire_grace": "400d"}, "misfire_grace: invalid duration '400d': at most"),
    ({"max_output": 10**30}, "max_output: invalid size 1000000000000000000000000000000: at most"),
    ({"max_output": "2GiB"}, "max_output: invalid size '2GiB': at most 1073741824 bytes (1GiB)"),
    ({"max_output": 1.5}, "max_output: expected a size: bytes or a string like 512KiB"),
    ({"max_output": False}, "max_output: expected a size"),
    ({"enabled": "yes"}, "enabled: Input should be a valid boolean"),
    ({"log_output": 1}, "log_output: Input should be a valid boolean"),
    ({"retries": 1.0}, "retries: Input should be a valid integer"),
    ({"retries": "3"}, "retries: Input should be a valid integer"),
    ({"nice": True}, "nice: Input should be a valid integer"),
    ({"limits": {"nofile": True}}, "limits.nofile: Input should be a valid integer"),
    ({"limits": {"nofile": "5"}}, "limits.nofile: Input should be a valid integer"),
    ({"limits": {"nofile": 2**64}}, "limits.nofile: expected a whole number from 0 to"),
    ({"umask": 18}, "umask: Input should be a valid string"),
    ({"env": {"A": 1}}, "env.A: Input should be a valid string"),
    ({"description": 5}, "description: Input should be a valid string"),
]


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One daemon for the table below (a daemon each would take seconds per row)."""
    daemon = DaemonProcess(tmp_path_factory.mktemp("shared") / "state")
    yield daemon
    daemon.stop()


@pytest.mark.parametrize(("change", "message"), WRONG_VALUES)
def test_values_are_never_converted_or_absurd(
    shared_daemon: DaemonProcess, change: dict[str, Any], message: str
) -> None:
    created = _send(shared_daemon, "POST", "/api/v1/jobs", {**JOB, **change})
    assert created.status_code == 422, created.text
    assert created.json()["error"].startswith(message), created.text
    assert shared_daemon.api("GET", "/api/v1/jobs") == []


def test_a_wrong_method_names_every_method_of_the_path(shared_daemon: DaemonProcess) -> None:
    for path, allowed in (
        ("/api/v1/jobs", "GET, POST"),
        ("/api/v1/jobs/j", "DELETE, GET, PATCH"),
        ("/api/v1/jobs/j/trigger", "POST"),
    ):
        response = shared_daemon.http.request("PUT", path)
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == allowed
        assert response.json() == {"error": "Method Not Allowed"}


def test_query_times_are_iso_8601_never_unix_seconds(shared_daemon: DaemonProcess) -> None:
    for path, params in (
        ("/api/v1/runs", {"until": "0.5"}),
        ("/api/v1/runs", {"since": "2024"}),
        ("/api/v1/schedule/preview", {"expression": "@daily", "after": "1700000000"}),
    ):
        response = shared_daemon.http.get(path, params=params)
        assert response.status_code == 422, (params, response.text)
        (name,) = (key for key in params if key != "expression")
        assert response.json() == {
            "error": f"{name}: expected an ISO 8601 time like 2024-05-01T12:00:00Z"
        }
    assert shared_daemon.api("GET", "/api/v1/runs", params={"since": "2024-05-01"}) == []
