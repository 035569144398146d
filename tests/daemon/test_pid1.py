"""`evercron serve` as PID 1 of a PID namespace (a container): it stays a stable parent,
reaps what is reparented to it, forwards signals, and survives hot upgrades."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.daemon.conftest import is_running

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a PID namespace needs root and unshare(1)",
)


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of each child of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append((int(entry.name), fields[0]))
    return found


def _wait(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_pid_1_supervises_generations_across_upgrades(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        outer = subprocess.Popen(
            [
                *("unshare", "-pf", "--mount-proc", "--kill-child"),
                *(sys.executable, "-m", "evercron", "serve"),
                *("--state-dir", str(state_dir), "--listen", "127.0.0.1:0"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: "evercron listening on " in log_path.read_text(), "the daemon")
        url = log_path.read_text().split("evercron listening on ")[1].split()[0]
        init = _children(outer.pid)[0][0]
        address = json.loads((state_dir / "daemon.json").read_text())
        assert address["pid"] == 2, "the daemon runs below the namespace's PID 1"
        headers = {"Authorization": f"Bearer {address['token']}"}
        first = _children(init)
        assert len(first) == 1

        # SIGHUP to PID 1 reaches the serving generation: a hot upgrade.
        os.kill(init, signal.SIGHUP)

        def serving_pid() -> int:
            return int(json.loads((state_dir / "daemon.json").read_text())["pid"])

        _wait(lambda: serving_pid() != 2, "the new generation")
        # The old generation exits; the new one, orphaned, is PID 1's child now and no
        # zombie is left behind.
        _wait(lambda: first[0][0] not in [pid for pid, _ in _children(init)], "the old exit")
        _wait(lambda: len(_children(init)) == 1, "the new generation under PID 1")
        assert [state for _, state in _children(init)] != ["Z"]
        answer = httpx.post(f"{url}/api/v1/upgrade", headers=headers, timeout=120).json()
        assert answer["status"] == "upgraded" and answer["generation"] == 3
        _wait(lambda: all(state != "Z" for _, state in _children(init)), "no zombies")
        _wait(lambda: len(_children(init)) == 1, "one generation left")
        assert httpx.get(f"{url}/api/v1/status", headers=headers).json()["pid"] == serving_pid()

        # A stop signal to PID 1 stops the daemon; PID 1 exits with its code.
        os.kill(init, signal.SIGTERM)
        assert outer.wait(timeout=60) == 0
        assert not is_running(init)
    finally:
        if outer.poll() is None:
            outer.kill()
            outer.wait()
    assert "Traceback" not in log_path.read_text()


def test_pid_1_exits_with_the_daemon_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon\n")
    result = subprocess.run(
        [
            *("unshare", "-pf", "--mount-proc", "--kill-child"),
            *(sys.executable, "-m", "evercron", "serve", "--config", str(bad)),
            *("--state-dir", str(tmp_path / "state")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "Traceback" not in result.stderr
