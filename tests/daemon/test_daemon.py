"""A real daemon: scheduling precision, policies, restarts, shutdown, output, limits."""

from __future__ import annotations

import datetime as dt
import os
import signal
import ssl
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.daemon.conftest import DaemonProcess
from tests.markers import Marker


def test_every_second_job_runs_exactly_once_per_second(start_daemon: Any, tmp_path: Path) -> None:
    log = tmp_path / "ticks"
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="tick",
        schedule="* * * * * * *",
        concurrency="allow",
        command=f'echo "$EVERCRON_SCHEDULED_AT $EVERCRON_JOB $EVERCRON_ATTEMPT $(date +%s.%N)"'
        f" >> {log}",
    )
    time.sleep(5.5)
    assert daemon.stop() == 0
    lines = [line.split() for line in log.read_text().splitlines()]
    counts = Counter(fields[0] for fields in lines)
    assert len(counts) >= 4
    assert set(counts.values()) == {1}
    assert all(fields[1:3] == ["tick", "1"] for fields in lines)
    for index, (scheduled, _, _, ran) in enumerate(sorted(lines)):
        lateness = float(ran) - dt.datetime.fromisoformat(scheduled).timestamp()
        assert lateness >= 0, (scheduled, ran)  # never early
        if index > 0:  # the first may be a firing that passed while the job was added
            assert lateness < 0.5, (scheduled, ran)


def test_firings_that_start_late_are_told_in_the_log_and_metrics(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="tick", schedule="* * * * * * *", concurrency="allow", command="true")
    time.sleep(1.5)
    assert "falling behind" not in daemon.log()
    assert "evercron_firings_late 0.0" in daemon.http.get("/metrics").text
    # Frozen for 2.5 s (as by a host under load or a paused VM): at least one firing due
    # meanwhile starts more than a second late once the daemon runs again.
    daemon.process.send_signal(signal.SIGSTOP)
    time.sleep(2.5)
    daemon.process.send_signal(signal.SIGCONT)
    time.sleep(1.5)
    metrics = daemon.http.get("/metrics").text
    late = next(line for line in metrics.splitlines() if line.startswith("evercron_firings_late "))
    assert float(late.split()[1]) >= 1, metrics
    warnings = [line for line in daemon.log().splitlines() if "falling behind" in line]
    assert len(warnings) == 1, warnings  # one line, however many were late
    assert "WARNING" in warnings[0]
    assert "s late; the machine or the daemon is overloaded" in warnings[0]
    # started_at is when each command was let run, not when it was meant to be.
    runs = daemon.api("GET", "/api/v1/runs", params={"limit": 1000})
    delays = [
        dt.datetime.fromisoformat(r["started_at"]) - dt.datetime.fromisoformat(r["scheduled_at"])
        for r in runs
        if r["status"] == "succeeded"
    ]
    assert max(delays) >= dt.timedelta(seconds=1), delays
    assert min(delays) < dt.timedelta(seconds=0.5), delays
    assert daemon.stop() == 0


def test_timeout_kills_the_tree_and_api_kill(start_daemon: Any, marker: Marker) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="slow",
        schedule="0 0 1 1 *",
        timeout="1s",
        kill_grace="2s",
        command=f"{marker.sleep()} & {marker.sleep()}",
    )
    run = daemon.api("POST", "/api/v1/jobs/slow/trigger", 202)
    finished = daemon.wait_for_run(run["id"])
    assert finished["status"] == "timed_out" and finished["signal"] == "SIGTERM"
    assert marker.alive() == []
    daemon.add_job(
        name="killme", schedule="0 0 1 1 *", command=f"{marker.sleep()} & {marker.sleep()}"
    )
    run = daemon.api("POST", "/api/v1/jobs/killme/trigger", 202)
    time.sleep(0.5)
    daemon.api("POST", f"/api/v1/runs/{run['id']}/kill", 202)
    finished = daemon.wait_for_run(run["id"])
    assert finished["status"] == "killed" and finished["exit_code"] is None
    assert marker.alive() == []
    daemon.api("POST", f"/api/v1/runs/{run['id']}/kill", 409)
    daemon.api("POST", "/api/v1/runs/999999/kill", 404)


def test_concurrency_policies(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    for policy in ("allow", "forbid", "replace"):
        daemon.add_job(
            name=policy, schedule="* * * * * * *", concurrency=policy, command="sleep 2.5"
        )
    time.sleep(4.2)
    daemon.stop()
    restarted: DaemonProcess = start_daemon()
    for policy in ("allow", "forbid", "replace"):
        restarted.api("POST", f"/api/v1/jobs/{policy}/pause")
    runs = restarted.api("GET", "/api/v1/runs", params={"limit": 200})
    by_job: dict[str, Counter[str]] = {p: Counter() for p in ("allow", "forbid", "replace")}
    for run in runs:
        by_job[run["job"]][run["status"]] += 1
    assert by_job["allow"]["skipped"] == 0 and by_job["allow"]["killed"] == 0
    assert by_job["allow"]["succeeded"] + by_job["allow"]["killed"] >= 1
    assert by_job["forbid"]["skipped"] >= 2
    assert by_job["replace"]["killed"] >= 2 and by_job["replace"]["skipped"] == 0


def test_manual_trigger_refused_by_forbid(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="long", schedule="0 0 1 1 *", command="sleep 5")
    run = daemon.api("POST", "/api/v1/jobs/long/trigger", 202)
    response = daemon.http.post("/api/v1/jobs/long/trigger")
    assert response.status_code == 409 and "forbid" in response.json()["error"]
    daemon.api("POST", f"/api/v1/runs/{run['id']}/kill", 202)


def test_misfire_policies_after_downtime(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    for policy in ("skip", "run-once", "run-all"):
        # A grace of 0: every firing that passed while the daemon was down is missed.
        daemon.add_job(
            name=policy,
            schedule="* * * * * * *",
            misfire=policy,
            misfire_grace="0s",
            concurrency="allow",
            command="true",
        )
    time.sleep(1.5)
    assert daemon.stop() == 0
    stopped = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    time.sleep(4)
    again: DaemonProcess = start_daemon()
    time.sleep(1)
    # Only the catch-ups for the downtime (a job added just past a second boundary may
    # also catch that second up, with a grace of 0).
    runs = [
        run
        for run in again.api("GET", "/api/v1/runs", params={"limit": 500})
        if dt.datetime.fromisoformat(run["scheduled_at"]) > stopped
    ]
    catch_ups = Counter(run["job"] for run in runs if run["trigger"] == "catch-up")
    assert catch_ups["skip"] == 0
    assert catch_ups["run-once"] == 1
    assert 3 <= catch_ups["run-all"] <= 8
    latest = max(
        run["scheduled_at"]
        for run in runs
        if run["job"] == "run-once" and run["trigger"] == "catch-up"
    )
    missed_all = sorted(
        run["scheduled_at"]
        for run in runs
        if run["job"] == "run-all" and run["trigger"] == "catch-up"
    )
    assert latest == missed_all[-1]  # run-once runs the latest missed firing


def test_history_survives_a_restart(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="once", schedule="0 0 1 1 *", command="echo kept")
    run = daemon.api("POST", "/api/v1/jobs/once/trigger", 202)
    daemon.wait_for_run(run["id"])
    assert daemon.stop() == 0
    again: DaemonProcess = start_daemon()
    assert again.api("GET", f"/api/v1/runs/{run['id']}")["status"] == "succeeded"
    assert again.http.get(f"/api/v1/runs/{run['id']}/output").content == b"kept\n"
    assert again.api("GET", "/api/v1/jobs/once")["name"] == "once"


def test_sigkill_mid_run_gives_a_lost_run_and_no_leftover(
    start_daemon: Any, marker: Marker
) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="victim", schedule="0 0 1 1 *", command=marker.sleep())
    run = daemon.api("POST", "/api/v1/jobs/victim/trigger", 202)
    time.sleep(0.5)
    daemon.stop(signal.SIGKILL)
    # The job's process is in its own session: it survives the daemon ...
    assert len(marker.alive()) == 1
    again: DaemonProcess = start_daemon()
    lost = again.api("GET", f"/api/v1/runs/{run['id']}")
    assert lost["status"] == "lost" and "died" in lost["error"]
    # ... until the next daemon marks the run lost and ends what it left.
    deadline = time.monotonic() + 5
    while marker.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.alive() == []


def test_sigterm_waits_for_a_running_job(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="finishing", schedule="0 0 1 1 *", command="sleep 1.5; echo done")
    run = daemon.api("POST", "/api/v1/jobs/finishing/trigger", 202)
    time.sleep(0.3)
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began >= 1.0
    # The log is written in batches: its last lines are not lost at exit.
    assert daemon.log().rstrip().endswith("INFO evercron.daemon: stopped")
    again: DaemonProcess = start_daemon()
    assert again.api("GET", f"/api/v1/runs/{run['id']}")["status"] == "succeeded"


def test_second_sigterm_ends_jobs_at_once(start_daemon: Any, marker: Marker) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="stubborn", schedule="0 0 1 1 *", command=marker.sleep())
    run = daemon.api("POST", "/api/v1/jobs/stubborn/trigger", 202)
    time.sleep(0.3)
    daemon.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 10
    assert marker.alive() == []
    again: DaemonProcess = start_daemon()
    assert again.api("GET", f"/api/v1/runs/{run['id']}")["status"] == "killed"


def test_large_output_keeps_the_daemon_small(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="loud", schedule="0 0 1 1 *", max_output="1MiB", command="head -c 314572800 /dev/zero"
    )
    run = daemon.api("POST", "/api/v1/jobs/loud/trigger", 202)
    finished = daemon.wait_for_run(run["id"], timeout=120)
    assert finished["status"] == "succeeded"
    assert finished["output_bytes"] == 300 * 1024 * 1024 and finished["output_truncated"]
    assert len(daemon.http.get(f"/api/v1/runs/{run['id']}/output").content) == 1024 * 1024
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    peak_kb = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    )
    assert peak_kb < 150 * 1024


def test_second_serve_on_the_same_state_dir_is_refused(start_daemon: Any, tmp_path: Path) -> None:
    daemon: DaemonProcess = start_daemon()
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "evercron",
            "serve",
            "--state-dir",
            str(daemon.state_dir),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode == 1
    assert f"already serving state dir {daemon.state_dir}" in second.stderr
    assert str(daemon.process.pid) in second.stderr


def test_non_loopback_needs_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVERCRON_TOKEN"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "evercron",
            "serve",
            "--state-dir",
            str(tmp_path),
            "--listen",
            "0.0.0.0:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "needs a token" in done.stderr and len(done.stderr.splitlines()) == 1


def test_invalid_config_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "evercron.toml"
    config.write_text(
        '[[job]]\nname = "a"\nschedule = "0 24 * * *"\ncommand = "x"\n'
        '[[job]]\nname = "b"\nschedule = "@daily"\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "evercron",
            "serve",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("evercron: error: ") == 2
    assert 'hour field "24"' in done.stderr and "command: required" in done.stderr
    assert not (tmp_path / "state").exists()


def test_token_from_the_environment_and_generated_token_file(
    start_daemon: Any, tmp_path: Path
) -> None:
    daemon: DaemonProcess = start_daemon(env={"EVERCRON_TOKEN": "from-env-123"})
    assert daemon.token == "from-env-123"
    assert daemon.api("GET", "/api/v1/status")["pid"] == daemon.process.pid
    assert not (daemon.state_dir / "token").exists()
    assert (daemon.state_dir / "daemon.json").stat().st_mode & 0o777 == 0o600
    daemon.stop()
    generated: DaemonProcess = start_daemon(
        state_dir=tmp_path / "other", env={"EVERCRON_TOKEN": ""}
    )
    token_file = generated.state_dir / "token"
    assert token_file.read_text().strip() == generated.token
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert generated.state_dir.stat().st_mode & 0o777 == 0o700


def test_tls(start_daemon: Any, tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    config = tmp_path / "tls.toml"
    config.write_text(f'[daemon]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    daemon: DaemonProcess = start_daemon("--config", str(config))
    assert daemon.url.startswith("https://")
    trusted = ssl.create_default_context(cafile=str(cert))
    assert httpx.get(f"{daemon.url}/healthz", verify=trusted).json() == {"status": "ok"}
    jobs = subprocess.run(
        [
            *(sys.executable, "-m", "evercron", "jobs", "--json"),
            *("--state-dir", str(daemon.state_dir), "--ca-cert", str(cert)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert jobs.returncode == 0 and jobs.stdout.strip() == "[]"
    # A hot upgrade keeps serving TLS on the inherited socket.
    headers = {"Authorization": f"Bearer {daemon.token}"}
    answer = httpx.post(
        f"{daemon.url}/api/v1/upgrade", headers=headers, verify=trusted, timeout=120
    ).json()
    assert answer["status"] == "upgraded"
    assert daemon.process.wait(timeout=30) == 0
    status = httpx.get(f"{daemon.url}/api/v1/status", headers=headers, verify=trusted).json()
    assert status["pid"] == answer["pid"]
