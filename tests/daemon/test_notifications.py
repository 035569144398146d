"""Notifications through a real daemon: real webhook and SMTP receivers on loopback, a
restart and a hot upgrade between an event and its delivery, `evercron notify test`."""

from __future__ import annotations

import hashlib
import hmac
import signal
import time
from pathlib import Path
from typing import Any

from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli
from tests.notify.receivers import MailReceiver, WebhookReceiver

SECRET = "s3cret"


def _config(tmp_path: Path, url: str, extra: str = "", jobs: str = "") -> Path:
    flag = tmp_path / "healthy"
    path = tmp_path / "evercron.toml"
    path.write_text(
        f"""
[daemon]
public_url = "https://cron.example.com/"

[[job]]
name = "flaky"
schedule = "0 0 1 1 *"
command = "echo checking; test -e {flag}"
env = {{ API_TOKEN = "hunter2-secret" }}

{jobs}

[[notify]]
name = "hook"
url = "{url}"
secret = "{SECRET}"
retry_backoff = "200ms"
{extra}
"""
    )
    return path


def _trigger(daemon: DaemonProcess, job: str) -> dict[str, Any]:
    run = daemon.api("POST", f"/api/v1/jobs/{job}/trigger", 202)
    return daemon.wait_for_run(run["id"])


def _wait_sent(daemon: DaemonProcess, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found: list[dict[str, Any]] = daemon.api("GET", "/api/v1/notifications")
        if sum(1 for n in found if n["state"] == "sent") >= count:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_ten_failures_are_one_message_then_recovered(start_daemon: Any, tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        daemon: DaemonProcess = start_daemon("--config", str(_config(tmp_path, receiver.url)))
        runs = [_trigger(daemon, "flaky") for _ in range(10)]
        assert all(run["status"] == "failed" for run in runs)
        (tmp_path / "healthy").touch()
        recovered = _trigger(daemon, "flaky")
        _wait_sent(daemon, 2)
        time.sleep(0.5)  # and nothing more arrives
        assert daemon.stop() == 0
    by_event = {request.json()["event"]: request for request in receiver.requests}
    assert len(by_event) == len(receiver.requests) == 2
    failed, back = by_event["failed"], by_event["recovered"]
    for request in receiver.requests:
        digest = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Evercron-Signature"] == f"sha256={digest}"
        assert b"hunter2-secret" not in request.body and b"API_TOKEN" not in request.body
    assert failed.json()["event"] == "failed" and failed.json()["run"]["id"] == runs[0]["id"]
    assert failed.json()["output_tail"] == "checking\n"
    payload = back.json()
    assert (payload["event"], payload["job"]) == ("recovered", "flaky")
    assert payload["run"]["id"] == recovered["id"] and payload["run"]["status"] == "succeeded"
    assert payload["link"] == f"https://cron.example.com/runs/{recovered['id']}"


def test_a_restart_between_event_and_delivery(start_daemon: Any, tmp_path: Path) -> None:
    with WebhookReceiver([500]) as receiver:
        config = _config(tmp_path, receiver.url)
        daemon: DaemonProcess = start_daemon("--config", str(config))
        run = _trigger(daemon, "flaky")
        receiver.wait_for(1)  # refused: it stays in the outbox
        assert daemon.stop() == 0
        failures = [line for line in daemon.log().splitlines() if 'channel "hook"' in line]
        assert len(failures) == 1, failures  # logged once, not per attempt
        receiver.statuses = [200]
        again: DaemonProcess = start_daemon("--config", str(config))
        (notification,) = _wait_sent(again, 1)
        assert again.stop() == 0
    assert notification["run"] == run["id"] and notification["attempts"] >= 2
    assert notification["last_error"] == "HTTP 500: ok"
    assert [r.answered for r in receiver.requests].count(200) == 1


def test_a_hot_upgrade_between_event_and_delivery(start_daemon: Any, tmp_path: Path) -> None:
    with WebhookReceiver([500]) as receiver:
        config = _config(tmp_path, receiver.url)
        daemon: DaemonProcess = start_daemon("--config", str(config))
        _trigger(daemon, "flaky")
        receiver.wait_for(1)
        daemon.upgrade()
        receiver.statuses = [200]
        _wait_sent(daemon, 1)
        time.sleep(1)  # both generations had time to send it again: neither does
        assert [r.answered for r in receiver.requests].count(200) == 1


def test_metrics_survive_a_hot_upgrade(start_daemon: Any, tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        daemon: DaemonProcess = start_daemon(
            "--config", str(_config(tmp_path, receiver.url, extra="every_run = true"))
        )
        for _ in range(3):
            _trigger(daemon, "flaky")
        _wait_sent(daemon, 3)
        failed = 'evercron_runs_total{job_name="flaky",status="failed",trigger="manual"} 3.0'
        sent = 'evercron_notifications_total{channel="hook",outcome="sent"} 3.0'
        before = daemon.http.get("/metrics").text
        assert failed in before and sent in before
        daemon.upgrade()
        after = daemon.http.get("/metrics").text  # the successor answers
        assert failed in after and sent in after
        _trigger(daemon, "flaky")
        assert failed.replace("} 3.0", "} 4.0") in daemon.http.get("/metrics").text


def test_overdue_and_started_events(start_daemon: Any, tmp_path: Path) -> None:
    jobs = '[[job]]\nname = "slow"\nschedule = "0 0 1 1 *"\ncommand = "sleep 1.5"\n'
    jobs += 'warn_after = "300ms"\n'
    with WebhookReceiver() as receiver:
        config = _config(
            tmp_path, receiver.url, extra='on = ["started", "overdue"]\njobs = ["sl*"]', jobs=jobs
        )
        daemon: DaemonProcess = start_daemon("--config", str(config))
        run = daemon.api("POST", "/api/v1/jobs/slow/trigger", 202)
        started, overdue = receiver.wait_for(2)
        assert daemon.api("GET", f"/api/v1/runs/{run['id']}")["status"] == "running"
        daemon.wait_for_run(run["id"])
        _trigger(daemon, "flaky")  # not a job of this channel
        time.sleep(0.5)
        assert daemon.stop() == 0
    assert len(receiver.requests) == 2
    assert [started.json()["event"], overdue.json()["event"]] == ["started", "overdue"]
    assert overdue.json()["run"]["status"] == "running"
    assert overdue.json()["run"]["finished_at"] is None


def test_notify_test_through_webhook_and_mail(start_daemon: Any, tmp_path: Path) -> None:
    with WebhookReceiver([204, 500]) as receiver, MailReceiver() as mail:
        extra = f"""
[[notify]]
name = "mail"
url = "mailto:ops@example.com"

[smtp]
host = "127.0.0.1"
port = {mail.port}
from = "cron@example.com"
"""
        daemon: DaemonProcess = start_daemon(
            "--config", str(_config(tmp_path, receiver.url, extra=extra))
        )
        state = ["--state-dir", str(daemon.state_dir)]
        ok = run_cli("notify", "test", "hook", *state)
        assert (ok.returncode, ok.stdout) == (0, "hook: delivered (HTTP 204)\n")
        refused = run_cli("notify", "test", "hook", *state)
        assert refused.returncode == 1
        assert refused.stderr == "evercron: error: hook: not delivered: HTTP 500: ok\n"
        mailed = run_cli("notify", "test", "mail", *state, "--json")
        assert mailed.returncode == 0 and '"ok": true' in mailed.stdout
        assert MailReceiver.reply in mailed.stdout
        unknown = run_cli("notify", "test", "nope", *state)
        assert unknown.returncode != 0
        assert unknown.stderr == 'evercron: error: no notify channel named "nope"\n'
        assert receiver.requests[0].json()["event"] == "test"
        assert mail.envelopes[0].rcpt_tos == ["ops@example.com"]
        assert daemon.stop() == 0


def test_bad_channel_config_is_refused_at_start(tmp_path: Path) -> None:
    config = _config(tmp_path, "gopher://example.com/x")
    refused = run_cli("serve", "--config", str(config), "--state-dir", str(tmp_path / "s"))
    assert refused.returncode == 2
    line = config.read_text().splitlines().index("[[notify]]") + 1
    assert f'{config}:{line}: notify "hook": url: unknown scheme "gopher:"' in refused.stderr


def test_lost_runs_notify_after_a_crash(start_daemon: Any, tmp_path: Path, marker: Any) -> None:
    jobs = f'[[job]]\nname = "victim"\nschedule = "0 0 1 1 *"\ncommand = "{marker.sleep()}"\n'
    with WebhookReceiver() as receiver:
        config = _config(tmp_path, receiver.url, jobs=jobs)
        daemon: DaemonProcess = start_daemon("--config", str(config))
        run = daemon.api("POST", "/api/v1/jobs/victim/trigger", 202)
        deadline = time.monotonic() + 10
        while not marker.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        daemon.stop(signal.SIGKILL)
        again: DaemonProcess = start_daemon("--config", str(config))
        (lost,) = receiver.wait_for(1)
        metrics = again.http.get("/metrics").text
        assert again.stop() == 0
    assert (lost.json()["event"], lost.json()["run"]["id"]) == ("lost", run["id"])
    counted = 'evercron_runs_total{job_name="victim",status="lost",trigger="manual"} 1.0'
    assert counted in metrics  # marked lost at start-up: counted by the new process


def test_a_skipped_firing_is_missed(start_daemon: Any, tmp_path: Path) -> None:
    jobs = '[[job]]\nname = "long"\nschedule = "* * * * * * *"\ncommand = "sleep 1.6"\n'
    with WebhookReceiver() as receiver:
        config = _config(tmp_path, receiver.url, extra='on = ["missed"]', jobs=jobs)
        daemon: DaemonProcess = start_daemon("--config", str(config))
        (missed,) = receiver.wait_for(1)
        assert daemon.stop() == 0
    payload = missed.json()
    assert (payload["event"], payload["job"]) == ("missed", "long")
    assert payload["run"]["status"] == "skipped"
    assert "concurrency=forbid" in payload["message"]
