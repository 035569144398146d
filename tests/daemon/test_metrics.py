"""/metrics of a real daemon: names, the `job_name` label, series present from start-up,
histograms and counters on use, and the text format as Prometheus parses it."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.conftest import DaemonProcess

PER_JOB_GAUGES = (
    "evercron_job_last_success_timestamp_seconds",
    "evercron_job_last_failure_timestamp_seconds",
    "evercron_job_next_run_timestamp_seconds",
    "evercron_job_running",
    "evercron_job_interval_seconds",
)


def _samples(daemon: DaemonProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = daemon.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_series_exist_from_start_up_for_every_job(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="hourly", schedule="0 * * * *", command="true")
    daemon.add_job(name="weekdays", schedule="0 9 * * MON-FRI", command="true", timezone="UTC")
    daemon.add_job(name="boot", schedule="@reboot", command="true")
    daemon.api("POST", "/api/v1/jobs/hourly/pause")
    samples = _samples(daemon)
    assert all("job" not in dict(labels) for _, labels in samples), "never the label job"
    for job in ("hourly", "weekdays", "boot"):
        for status in ("succeeded", "failed"):
            labels = {"job_name": job, "status": status, "trigger": "schedule"}
            ran = 1 if (job, status) == ("boot", "succeeded") else 0  # @reboot: at once
            assert _value(samples, "evercron_runs_total", **labels) in (0, ran)
        for gauge in PER_JOB_GAUGES:
            assert (gauge, (("job_name", job),)) in samples, (gauge, job)
        assert _value(samples, "evercron_firings_missed_total", job_name=job) == 0
    assert _value(samples, "evercron_job_interval_seconds", job_name="weekdays") == 86400
    assert _value(samples, "evercron_job_interval_seconds", job_name="hourly") == 3600
    assert math.isnan(_value(samples, "evercron_job_interval_seconds", job_name="boot"))
    assert math.isnan(_value(samples, "evercron_job_next_run_timestamp_seconds", job_name="hourly"))
    next_run = _value(samples, "evercron_job_next_run_timestamp_seconds", job_name="weekdays")
    assert time.time() < next_run < time.time() + 4 * 86400
    assert _value(samples, "evercron_jobs") == 3 and _value(samples, "evercron_jobs_paused") == 1
    assert ("evercron_firings_missed", ()) not in samples  # the old gauge is gone
    histograms = {dict(labels).get("job_name") for name, labels in samples if "_bucket" in name}
    assert histograms <= {"boot"}  # (on first use: only the @reboot job ran)
    assert daemon.stop() == 0


def test_runs_fill_the_counters_histograms_and_timestamps(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="ok", schedule="* * * * * * *", command="true", concurrency="allow")
    daemon.add_job(name="bad", schedule="0 0 1 1 *", command="sleep 0.2; exit 3")
    run = daemon.api("POST", "/api/v1/jobs/bad/trigger", 202)
    daemon.wait_for_run(run["id"])
    time.sleep(2.5)  # a couple of scheduled runs of "ok"
    samples = _samples(daemon)
    assert (
        _value(samples, "evercron_runs_total", job_name="bad", status="failed", trigger="manual")
        == 1
    )
    scheduled_ok = _value(
        samples, "evercron_runs_total", job_name="ok", status="succeeded", trigger="schedule"
    )
    assert scheduled_ok >= 2
    count = _value(samples, "evercron_run_duration_seconds_count", job_name="bad")
    below = _value(samples, "evercron_run_duration_seconds_bucket", job_name="bad", le="0.1")
    above = _value(samples, "evercron_run_duration_seconds_bucket", job_name="bad", le="0.5")
    assert (count, below, above) == (1, 0, 1)
    assert 0.2 <= _value(samples, "evercron_run_duration_seconds_sum", job_name="bad") < 0.5
    delays = _value(samples, "evercron_run_start_delay_seconds_count", job_name="ok")
    assert delays >= scheduled_ok  # every scheduled start, none for the manual run
    assert ("evercron_run_start_delay_seconds_count", (("job_name", "bad"),)) not in samples
    last_failure = _value(samples, "evercron_job_last_failure_timestamp_seconds", job_name="bad")
    assert time.time() - 10 < last_failure <= time.time()
    assert _value(samples, "evercron_job_last_success_timestamp_seconds", job_name="bad") == 0
    assert _value(samples, "evercron_job_last_success_timestamp_seconds", job_name="ok") > 0
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/ensure-promtool (Debian's prometheus)"
    linted = subprocess.run(
        [promtool, "check", "metrics"],
        input=daemon.http.get("/metrics").text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert daemon.stop() == 0
