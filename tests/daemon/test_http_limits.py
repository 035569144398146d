"""Idle, slow and too many HTTP connections against a real daemon: the API keeps
answering within a second, every firing of an every-second job runs, slow clients are
closed after header_timeout and the log stays short."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import DaemonProcess

EVERY_SECOND = "* * * * * * *"
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
def descriptors() -> Iterator[None]:
    """This test process may open thousands of sockets: its soft limit goes up to the
    hard one for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= 4000, f"descriptor limit {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _config(tmp_path: Path, **daemon: Any) -> str:
    path = tmp_path / "evercron.toml"
    lines = [f"{key} = {value!r}" for key, value in daemon.items()]
    path.write_text("[daemon]\n" + "\n".join(lines) + "\n")
    return str(path)


@contextlib.contextmanager
def _idle_connections(daemon: DaemonProcess, count: int) -> Iterator[list[socket.socket]]:
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection((host, int(port)), timeout=10))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def _slowest_answer(daemon: DaemonProcess, tries: int = 5) -> float:
    """Seconds the slowest of `tries` API calls took, each on a new connection."""
    slowest = 0.0
    for _ in range(tries):
        began = time.monotonic()
        response = httpx.get(
            f"{daemon.url}/api/v1/status",
            headers={"Authorization": f"Bearer {daemon.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.2)
    return slowest


def _unrun_seconds(daemon: DaemonProcess, job: str, began: float, ended: float) -> list[int]:
    """The whole seconds strictly between `began` and `ended` (POSIX times) without a
    succeeded run of `job`, once every run due by then has finished."""
    deadline = time.monotonic() + 60
    while True:
        runs = daemon.api("GET", "/api/v1/runs", params={"job": job, "limit": 500})
        if all(run["status"] != "running" for run in runs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    succeeded = {
        int(dt.datetime.fromisoformat(run["scheduled_at"]).timestamp())
        for run in runs
        if run["status"] == "succeeded"
    }
    expected = range(math.floor(began) + 1, math.ceil(ended))
    return [second for second in expected if second not in succeeded]


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_3000_idle_connections_slow_neither_the_api_nor_the_firings(
    start_daemon: Any, descriptors: None
) -> None:
    daemon = start_daemon()
    daemon.add_job(name="tick", schedule=EVERY_SECOND, command="true")
    began = time.time()
    with _idle_connections(daemon, 3000):
        time.sleep(1)
        open_fds = _open_descriptors(daemon.process.pid)
        slowest = _slowest_answer(daemon)
        time.sleep(max(0.0, began + 6 - time.time()))
        ended = time.time()
    print(f"slowest API answer {slowest:.3f}s with 3000 idle connections, {open_fds} fds")
    assert slowest < 1.0
    assert _unrun_seconds(daemon, "tick", began, ended) == []
    # The oldest idle ones were closed to stay within max_connections (1000 by default).
    assert open_fds < 1200
    assert "idle the longest (more than 1000 open)" in daemon.log()


def test_a_slow_client_is_closed_after_header_timeout(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--config", _config(tmp_path, header_timeout="1s"))
    with _idle_connections(daemon, 2) as (silent, trickling):
        began = time.monotonic()
        for byte in REQUEST[:-1]:  # never the last byte
            try:
                trickling.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
        trickling.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert trickling.recv(100) == b""
        closed_after = time.monotonic() - began
        silent.settimeout(1)
        with contextlib.suppress(ConnectionResetError):
            assert silent.recv(100) == b""  # closed by now too
        assert daemon.api("GET", "/api/v1/status")
    assert 0.9 < closed_after < 5
    assert re.search(r"closed [12] that sent no whole request within 1s", daemon.log())


def test_under_a_low_descriptor_limit_http_clients_cannot_starve_the_scheduler(
    start_daemon: Any, descriptors: None
) -> None:
    daemon = start_daemon(nofile=1024)
    daemon.add_job(name="tick", schedule=EVERY_SECOND, command="true")
    began = time.time()
    with _idle_connections(daemon, 1500):  # more than the daemon has descriptors
        time.sleep(1)
        held = _open_descriptors(daemon.process.pid)
        slowest = _slowest_answer(daemon)
        time.sleep(max(0.0, began + 6 - time.time()))
        ended = time.time()
    assert slowest < 1.0
    assert held < 1024 - 256
    assert _unrun_seconds(daemon, "tick", began, ended) == []
    log = daemon.log()
    assert "max_connections 1000 lowered to 192" in log
    assert "Traceback" not in log and "Too many open files" not in log
    assert len([line for line in log.splitlines() if "HTTP connections" in line]) <= 3
    assert len(log) < 20_000
