"""`evercron serve --log-format json` and `[daemon] log_format`: a real daemon's log."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli
from tests.markers import Marker

_PRINTED = ("evercron listening on ", "web page: ")  # stdout, not the log


def _log_entries(daemon: DaemonProcess) -> list[dict[str, Any]]:
    lines = [line for line in daemon.log().splitlines() if line and not line.startswith(_PRINTED)]
    return [json.loads(line) for line in lines]  # every log line is one JSON object


def test_json_log_lines_name_the_job_and_run(start_daemon: Any, marker: Marker) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="victim", schedule="0 0 1 1 *", command=marker.sleep())
    run = daemon.api("POST", "/api/v1/jobs/victim/trigger", 202)
    deadline = time.monotonic() + 10
    while not marker.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    daemon.stop(signal.SIGKILL)
    again: DaemonProcess = start_daemon("--log-format", "json")
    assert again.api("GET", f"/api/v1/runs/{run['id']}")["status"] == "lost"
    host, port = again.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as garbage:  # uvicorn logs a warning
        garbage.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        garbage.recv(1000)
    assert again.stop() == 0
    entries = _log_entries(again)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries), entries
    assert {e["node"] for e in entries} == {socket.gethostname()}
    lost = next(e for e in entries if "marked lost" in e["message"])
    assert (lost["job"], lost["run"], lost["level"]) == ("victim", run["id"], "WARNING")
    assert any(e["message"].startswith("evercron ") and "serving" in e["message"] for e in entries)
    assert entries[-1]["message"] == "stopped"
    assert any(e["logger"].startswith("uvicorn") for e in entries), entries


def test_the_config_file_chooses_json_and_refuses_other_formats(
    start_daemon: Any, tmp_path: Path
) -> None:
    config = tmp_path / "evercron.toml"
    config.write_text('[daemon]\nlog_format = "json"\n')
    daemon: DaemonProcess = start_daemon("--config", str(config))
    assert daemon.stop() == 0
    assert _log_entries(daemon)[-1]["message"] == "stopped"
    config.write_text('[daemon]\n\nlog_format = "yaml"\n')
    refused = run_cli("serve", "--config", str(config), "--state-dir", str(tmp_path / "s"))
    assert refused.returncode == 2
    assert f'{config}:3: log_format: "yaml" is not one of text, json' in refused.stderr
