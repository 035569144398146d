"""The HTTP API against a real daemon: auth, validation, errors, live output, fuzzing."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.daemon import sse
from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli


def test_auth(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    assert httpx.get(f"{daemon.url}/healthz").json() == {"status": "ok"}
    missing = httpx.get(f"{daemon.url}/api/v1/jobs")
    assert missing.status_code == 401 and "missing API token" in missing.json()["error"]
    wrong = httpx.get(f"{daemon.url}/api/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong API token" in wrong.json()["error"]
    assert httpx.get(f"{daemon.url}/metrics").status_code == 401
    assert httpx.get(f"{daemon.url}/api/v1/openapi.json").status_code == 200
    assert "evercron_jobs" in daemon.http.get("/metrics").text


def test_job_lifecycle_and_errors(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    job = daemon.add_job(
        name="report",
        schedule="0 9 * * MON-FRI",
        command="echo report",
        timezone="Europe/Berlin",
        timeout="90s",
    )
    assert job["timeout"] == 90 and job["next_fire_at"] and job["source"] == "api"
    # Times are UTC in the API, whatever the job's zone.
    next_fire = dt.datetime.fromisoformat(job["next_fire_at"].replace("Z", "+00:00"))
    assert job["next_fire_at"].endswith("Z") and next_fire.utcoffset() == dt.timedelta(0)
    assert next_fire.astimezone(ZoneInfo("Europe/Berlin")).time() == dt.time(9, 0)
    for stamp in ("created_at", "updated_at"):
        assert job[stamp].endswith("Z"), job[stamp]
    assert job["explanation"] == "At 09:00, Monday through Friday"
    errors = {
        "duplicate": daemon.http.post(
            "/api/v1/jobs", json={"name": "report", "schedule": "@daily", "command": "x"}
        ),
        "schedule": daemon.http.post(
            "/api/v1/jobs", json={"name": "x", "schedule": "0 24 * * *", "command": "x"}
        ),
        "user": daemon.http.post(
            "/api/v1/jobs", json={"name": "x", "schedule": "@daily", "command": "x", "user": "root"}
        ),
        "unknown field": daemon.http.post(
            "/api/v1/jobs", json={"name": "x", "schedule": "@daily", "command": "x", "colour": 1}
        ),
        "not json": daemon.http.post(
            "/api/v1/jobs", content=b"{", headers={"content-type": "application/json"}
        ),
        "unknown job": daemon.http.get("/api/v1/jobs/nope"),
        "unknown run": daemon.http.get("/api/v1/runs/424242"),
        "huge run id": daemon.http.get(f"/api/v1/runs/{2**70}"),
        "bad status": daemon.http.get("/api/v1/runs", params={"status": "sleeping"}),
        "big body": daemon.http.post(
            "/api/v1/jobs",
            content=b"x" * (2 * 1024 * 1024),
            headers={"content-type": "application/json"},
        ),
    }
    expected = {
        "duplicate": 409,
        "schedule": 422,
        "user": 403,
        "unknown field": 422,
        "not json": 422,
        "unknown job": 404,
        "unknown run": 404,
        "huge run id": 422,
        "bad status": 422,
        "big body": 413,
    }
    for name, response in errors.items():
        assert response.status_code == expected[name], (name, response.text)
        assert response.json()["error"], name
    assert 'hour field "24"' in errors["schedule"].json()["error"]
    assert errors["unknown field"].json()["error"] == (
        "colour: unknown field (the fields are in the API document)"
    )
    assert errors["not json"].json()["error"] == (
        "the request body is not valid JSON (at character 1)"
    )

    changed = daemon.api("PATCH", "/api/v1/jobs/report", json={"schedule": "30 7 * * *"})
    assert changed["schedule"] == "30 7 * * *" and changed["next_fire_at"] != job["next_fire_at"]
    assert daemon.api("POST", "/api/v1/jobs/report/pause")["paused"] is True
    assert daemon.api("GET", "/api/v1/jobs/report")["next_fire_at"] is None
    assert daemon.api("POST", "/api/v1/jobs/report/resume")["paused"] is False
    daemon.api("DELETE", "/api/v1/jobs/report", 204)
    daemon.api("GET", "/api/v1/jobs/report", 404)


def test_concurrent_changes_neither_undo_each_other_nor_revive_a_deleted_job(
    start_daemon: Any,
) -> None:
    daemon: DaemonProcess = start_daemon()
    changes = [{"description": "d"}, {"timeout": "5m"}, {"command": "echo x"}, {"retries": 2}]

    def send(method: str, path: str, body: dict[str, Any] | None = None) -> int:
        with httpx.Client(base_url=daemon.url, headers=dict(daemon.http.headers)) as client:
            return client.request(method, path, json=body).status_code

    with ThreadPoolExecutor(len(changes) + 1) as pool:
        for round_ in range(4):
            name = f"j{round_}"
            daemon.add_job(name=name, schedule="@yearly", command="true")
            path = f"/api/v1/jobs/{name}"
            answers = [f.result() for f in [pool.submit(send, "PATCH", path, c) for c in changes]]
            assert answers == [200] * len(changes)
            job = daemon.api("GET", path)
            assert (job["description"], job["timeout"], job["command"], job["retries"]) == (
                "d",
                300.0,
                "echo x",
                2,
            )
            patched = [pool.submit(send, "PATCH", path, change) for change in changes]
            assert send("DELETE", path) == 204
            assert {future.result() for future in patched} <= {200, 404}
            daemon.api("GET", path, 404)  # no PATCH brought it back


def test_config_jobs_cannot_be_changed_through_the_api(start_daemon: Any, tmp_path: Path) -> None:
    crontab = tmp_path / "jobs.crontab"
    crontab.write_text("# name: from-file\n@daily echo file\n")
    daemon: DaemonProcess = start_daemon("--crontab", str(crontab))
    response = daemon.http.delete("/api/v1/jobs/from-file")
    assert response.status_code == 409 and str(crontab) in response.json()["error"]
    assert daemon.api("POST", "/api/v1/jobs/from-file/pause")["paused"] is True


def test_runs_filters_and_run_fields(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="ok", schedule="@yearly", command="echo $EVERCRON_RUN_ID")
    daemon.add_job(name="bad", schedule="@yearly", command="exit 3")
    good = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/ok/trigger", 202)["id"])
    bad = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/bad/trigger", 202)["id"])
    assert good["status"] == "succeeded" and bad["status"] == "failed" and bad["exit_code"] == 3
    for field in (
        "id",
        "job",
        "trigger",
        "scheduled_at",
        "started_at",
        "finished_at",
        "status",
        "exit_code",
        "signal",
        "attempt",
        "pid",
        "cpu_user",
        "cpu_system",
        "max_rss_kb",
        "output_bytes",
        "output_truncated",
        "error",
    ):
        assert field in good
    assert good["trigger"] == "manual" and good["scheduled_at"].endswith("Z")
    assert daemon.http.get(f"/api/v1/runs/{good['id']}/output").text == f"{good['id']}\n"
    listed = daemon.api("GET", "/api/v1/runs", params={"status": "failed"})
    assert [r["id"] for r in listed] == [bad["id"]]
    assert [r["id"] for r in daemon.api("GET", "/api/v1/runs", params={"job": "ok"})] == [
        good["id"]
    ]
    assert [r["id"] for r in daemon.api("GET", "/api/v1/runs")] == [bad["id"], good["id"]]


def test_follow_live_output_and_resume(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="talk",
        schedule="@yearly",
        command="for i in 1 2 3 4; do echo line$i; sleep 0.3; done; echo oops >&2",
    )
    run = daemon.api("POST", "/api/v1/jobs/talk/trigger", 202)
    response, events = sse.follow(daemon.http, run["id"])
    assert response.headers["content-type"].startswith("text/event-stream")
    kinds = [event.kind for event in events]
    assert kinds[-1] == "end" and events[-1].data["status"] == "succeeded"
    stdout = [event for event in events if event.kind == "stdout"]
    assert sse.output_of(stdout) == b"line1\nline2\nline3\nline4\n"
    assert ("stderr" in kinds) and kinds.index("stderr") > kinds.index("stdout")
    offsets = [e.id for e in events if e.kind in ("stdout", "stderr")]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert all(e.data["offset"] == e.id for e in events)
    # Resume after the second chunk: nothing before it again, the rest once.
    _, resumed = sse.follow(daemon.http, run["id"], str(offsets[1]))
    assert [e.id for e in resumed if e.kind in ("stdout", "stderr")] == offsets[2:]
    assert resumed[-1].kind == "end"


def test_truncated_output_is_marked_when_followed(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="big",
        schedule="@yearly",
        max_output="1KiB",
        command="python3 -c \"print('a' * 5000)\"",
    )
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/big/trigger", 202)["id"])
    assert run["output_truncated"] and run["output_bytes"] == 5001
    _, events = sse.follow(daemon.http, run["id"])
    kinds = [event.kind for event in events]
    assert "truncated" in kinds and kinds[-1] == "end"
    dropped = next(e.data["dropped"] for e in events if e.kind == "truncated")
    assert dropped == 5001 - 1024
    assert events[-1].data == {"offset": 5001, "status": "succeeded"}
    # `evercron logs` without -f says so too (on stderr: stdout stays the output itself).
    state = ["--state-dir", str(daemon.state_dir)]
    logs = run_cli("logs", str(run["id"]), *state)
    assert logs.returncode == 0 and len(logs.stdout) == 1024
    assert f"{dropped} bytes in the middle of its output were not kept" in logs.stderr
    as_json = json.loads(run_cli("logs", str(run["id"]), "--json", *state).stdout)
    assert as_json["bytes_not_kept"] == dropped and len(as_json["output"]) == 1024


def test_schemathesis_finds_no_server_error_or_schema_violation(
    start_daemon: Any, tmp_path: Path
) -> None:
    """Boundary values of every field and operation (coverage), then sequences that use
    what earlier answers returned (stateful): deterministic, so the same cases each run."""
    daemon: DaemonProcess = start_daemon()
    tool = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert tool is not None
    # 413 (a body over 1 MiB) is a fine way to refuse a body the schema does not allow.
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.negative_data_rejection]\nexpected-statuses = "
        '["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", '
        '"429", "5xx"]\n'
    )
    done = subprocess.run(
        [
            tool,
            "run",
            f"{daemon.url}/api/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {daemon.token}",
            "--phases",
            "examples,coverage,stateful",
            # Every check but "schema-valid data is accepted": the schema cannot say
            # which strings are cron expressions, time zones or durations.
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "-n",
            "10",
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--exclude-path-regex",
            "/(stop|upgrade)$",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert daemon.stop() == 0  # and with it whatever the generated jobs started
