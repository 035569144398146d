"""A daemon other machines can reach needs a token worth the name; logs show the real
address. (These bind 0.0.0.0 for a moment: only a long random token gets in.)"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("x", "needs a token of at least 16 characters (this one has 1)"),
        ("a" * 15, "needs a token of at least 16 characters (this one has 15)"),
        ("", "needs a token: set EVERCRON_TOKEN or [daemon] token"),
    ],
)
def test_a_weak_token_is_refused_off_loopback(tmp_path: Path, token: str, reason: str) -> None:
    done = run_cli(
        "serve",
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "0.0.0.0:0",
        env={"EVERCRON_TOKEN": token},
    )
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1, done.stderr
    # The address as bound: the port the system picked, not the 0 that was asked for.
    found = re.fullmatch(
        r"evercron: error: listening on 0\.0\.0\.0:(\d+) \(not loopback\) (.*)", line
    )
    assert found is not None and int(found.group(1)) != 0, line
    assert found.group(2) == reason


def test_a_weak_viewer_token_is_refused_off_loopback(tmp_path: Path) -> None:
    done = run_cli(
        "serve",
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "0.0.0.0:0",
        env={"EVERCRON_TOKEN": secrets.token_urlsafe(24), "EVERCRON_VIEWER_TOKEN": "look"},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.endswith(
        "(not loopback) needs a viewer token of at least 16 characters (this one has 4)\n"
    ), done.stderr


def test_a_token_that_cannot_be_a_header_is_refused(tmp_path: Path) -> None:
    done = run_cli(
        "serve",
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "127.0.0.1:0",
        env={"EVERCRON_TOKEN": "two words"},
    )
    assert done.returncode == 1
    assert done.stderr == (
        "evercron: error: the API token must be printable ASCII characters without spaces\n"
    )


def test_a_strong_token_serves_and_the_log_shows_the_bound_address(start_daemon: Any) -> None:
    token = secrets.token_urlsafe(24)
    daemon: DaemonProcess = start_daemon("--listen", "0.0.0.0:0", env={"EVERCRON_TOKEN": token})
    port = int(daemon.url.rsplit(":", 1)[1])
    assert port != 0 and daemon.api("GET", "/api/v1/status")["pid"] == daemon.process.pid
    assert f"serving {daemon.url} on 0.0.0.0:{port} " in daemon.log()
