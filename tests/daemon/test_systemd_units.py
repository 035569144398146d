"""The example systemd units in docs/systemd: valid for systemd, and true to what the
daemon does (notify protocol, reload = hot upgrade, evercron ends its own jobs)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evercron.settings import Settings
from evercron.units import parse_duration

UNITS = Path(__file__).resolve().parents[2] / "docs" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_service_unit_matches_the_daemon() -> None:
    service = _unit("evercron.service")["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "all"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillMode"] == "mixed"
    assert service["Delegate"] == "yes"  # a cgroup per run below the service's
    assert parse_duration(service["TimeoutStopSec"]) > Settings(state_dir=Path("/")).shutdown_grace
    assert service["ExecStart"].split()[1] == "serve"


def test_socket_unit_names_the_api_socket() -> None:
    socket_unit = _unit("evercron.socket")["Socket"]
    assert socket_unit["FileDescriptorName"] == "api"
    assert socket_unit["Service"] == "evercron.service"
    assert socket_unit["ListenStream"] == "127.0.0.1:8467"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    evercron = Path(sys.executable).with_name("evercron")
    for name in ("evercron.service", "evercron.socket"):
        text = (UNITS / name).read_text().replace("/usr/local/bin/evercron", str(evercron))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "evercron.socket", "evercron.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "systemd reported a problem"
