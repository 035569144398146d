"""Job limits in a real daemon: the settings in the API, what `status` says about them,
fork bombs and memory hogs capped, and limits this machine cannot enforce logged once."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest

from evercron.process.cgroup import limit_support
from evercron.process.controllers import MAX_MEMORY, MAX_PROCESSES
from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli
from tests.markers import Marker

HOG = f"{sys.executable} -c \"data = b'x' * 209715200; print('survived')\""
OFF = {"EVERCRON_CGROUPS": "off"}
UNAVAILABLE = "unavailable: cgroups turned off (EVERCRON_CGROUPS=off)"


def _needs(*settings: str) -> None:
    missing = limit_support().unenforced(dict.fromkeys(settings, 1))
    if missing:
        pytest.skip(f"not enforced here: {missing}")


def _seconds(run: dict[str, Any]) -> float:
    began = dt.datetime.fromisoformat(run["started_at"])
    return (dt.datetime.fromisoformat(run["finished_at"]) - began).total_seconds()


def test_the_settings_in_the_job_json_and_bad_ones_refused(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    plain = daemon.add_job(name="plain", schedule="@daily", command="true")
    assert (plain["max_processes"], plain["max_memory"]) == (4096, None)
    capped = daemon.add_job(
        name="capped", schedule="@daily", command="true", max_processes=50, max_memory="64MiB"
    )
    assert (capped["max_processes"], capped["max_memory"]) == (50, 64 << 20)
    changed = daemon.api("PATCH", "/api/v1/jobs/capped", json={"max_memory": None})
    assert (changed["max_processes"], changed["max_memory"]) == (50, None)
    for bad, message in (
        ({"max_processes": 0}, "max_processes: expected a whole number from 1 to 4194304"),
        ({"max_memory": "a lot"}, "max_memory: invalid size"),
        ({"max_memory": 4096}, "max_memory: must be at least 1MiB"),
    ):
        job = {"name": "bad", "schedule": "@daily", "command": "true", **bad}
        answer = daemon.api("POST", "/api/v1/jobs", 422, json=job)
        assert message in answer["error"], answer


def test_status_says_how_each_limit_is_enforced(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    expected = limit_support().describe()  # (a daemon started here has these cgroups)
    assert daemon.api("GET", "/api/v1/status")["limits"] == expected
    shown = run_cli("status", "--state-dir", str(daemon.state_dir))
    assert shown.returncode == 0, shown.stderr
    for setting, how in expected.items():
        assert f"  limit {setting}: {how}\n" in shown.stdout
    assert f"job limits: max_processes: {expected[MAX_PROCESSES]}" in daemon.log()


def test_a_fork_bomb_job_is_capped_and_ends_on_time(start_daemon: Any, marker: Marker) -> None:
    _needs(MAX_PROCESSES)
    daemon: DaemonProcess = start_daemon()
    bomb = f"trap '' TERM; bomb() {{ {marker.sleep()} & bomb | bomb & }}; bomb; wait"
    daemon.add_job(
        name="bomb",
        schedule="0 0 1 1 *",
        command=bomb,
        max_processes=50,
        timeout="2s",
        kill_grace="1s",
    )
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/bomb/trigger", 202)["id"])
    assert run["status"] == "timed_out"
    assert _seconds(run) < 2 + 1 + 3
    assert "max_processes (50) reached" in run["error"]
    assert marker.alive() == []


def test_a_memory_hog_job_fails_for_exceeding_max_memory(start_daemon: Any) -> None:
    _needs(MAX_MEMORY)
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="hog", schedule="0 0 1 1 *", command=HOG, max_memory="64MiB")
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/hog/trigger", 202)["id"])
    assert (run["status"], run["exit_code"], run["signal"]) == ("failed", None, "SIGKILL")
    assert run["error"] == "1 process killed by the kernel for exceeding max_memory (64MiB)"
    assert daemon.http.get(f"/api/v1/runs/{run['id']}/output").content == b""


def test_a_limit_the_machine_cannot_enforce_is_logged_once(
    start_daemon: Any, tmp_path: Path
) -> None:
    daemon: DaemonProcess = start_daemon(env=OFF)
    assert daemon.api("GET", "/api/v1/status")["limits"] == {
        MAX_PROCESSES: UNAVAILABLE,
        MAX_MEMORY: UNAVAILABLE,
    }
    daemon.add_job(name="plain", schedule="0 0 1 1 *", command="true")
    daemon.add_job(name="hog", schedule="0 0 1 1 *", command="true", max_memory="64MiB")
    for job in ("plain", "hog", "hog"):
        run = daemon.api("POST", f"/api/v1/jobs/{job}/trigger", 202)
        assert daemon.wait_for_run(run["id"])["status"] == "succeeded"  # it runs anyway
    warning = (
        "job hog: max_memory = 64MiB is not enforced on this machine (cgroups turned off "
        "(EVERCRON_CGROUPS=off)); its runs go without it"
    )
    assert daemon.log().count(warning) == 1
    assert "job plain:" not in daemon.log()  # the default cap is the start-up line's
    assert daemon.stop() == 0
    again: DaemonProcess = start_daemon(env=OFF)  # at start, before any run
    assert again.log().count(warning) == 1
