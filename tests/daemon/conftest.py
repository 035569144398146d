"""A real `evercron serve` process on a temporary state dir and an OS-picked port."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from evercron.process.cgroup import discover


class DaemonProcess:
    """One daemon process under test, with an authenticated API client."""

    def __init__(
        self,
        state_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        nofile: int | None = None,
    ) -> None:
        """Start `evercron serve ARGS...`; with `nofile`, under that descriptor limit
        (soft and hard, so that the daemon cannot raise it)."""
        self.state_dir = state_dir
        self.log_path = state_dir.parent / f"daemon-{time.monotonic_ns()}.log"
        self.args = args
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evercron",
                "serve",
                "--state-dir",
                str(state_dir),
                "--listen",
                "127.0.0.1:0",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            # Only setrlimit runs between fork and exec: safe with threads.
            preexec_fn=None if nofile is None else functools.partial(_limit_nofile, nofile),  # noqa: PLW1509
        )
        self.url = self._wait_for_url()
        address = json.loads((state_dir / "daemon.json").read_text())
        self.token = address["token"]
        self.http = httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token}"}
        )

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.log_path.read_text()
            for line in text.splitlines():
                if line.startswith("evercron listening on "):
                    return line.split()[3]
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"daemon did not start:\n{self.log_path.read_text()}")

    def api(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """Call the API and check the status code; the JSON answer (None if empty)."""
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, (response.status_code, response.text)
        return response.json() if response.content else None

    def add_job(self, **job: Any) -> dict[str, Any]:
        """Create a job through the API."""
        created: dict[str, Any] = self.api("POST", "/api/v1/jobs", 201, json=job)
        return created

    def wait_for_run(self, run_id: int, timeout: float = 30) -> dict[str, Any]:
        """Poll a run until it is finished; its final JSON."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.api("GET", f"/api/v1/runs/{run_id}")
            if run["status"] != "running":
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} still running after {timeout}s")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the daemon and wait for it to exit; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self.http.close()
            self._log.close()
        return code

    def log(self) -> str:
        """What the daemon printed so far."""
        return self.log_path.read_text()

    def upgrade(self, expect: int = 200) -> dict[str, Any]:
        """Hot-upgrade through the API (the answer comes once the new process serves)."""
        answer: dict[str, Any] = self.api("POST", "/api/v1/upgrade", expect, timeout=120)
        return answer

    def serving_pid(self) -> int:
        """The pid the state dir names as serving."""
        return int(json.loads((self.state_dir / "daemon.json").read_text())["pid"])


def _limit_nofile(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def is_running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 30) -> None:
    """Wait until `pid` has exited (it need not be our child)."""
    deadline = time.monotonic() + timeout
    while is_running(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} still running after {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    """Start daemons on `tmp_path/state` (or another dir); all are killed after the test."""
    started: list[DaemonProcess] = []

    def start(
        *args: str,
        state_dir: Path | None = None,
        env: dict[str, str] | None = None,
        nofile: int | None = None,
    ) -> DaemonProcess:
        daemon = DaemonProcess(state_dir or tmp_path / "state", *args, env=env, nofile=nofile)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        end_daemon(daemon)


@contextlib.contextmanager
def serving(state_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    """One daemon for a whole test module (module-scoped fixtures): killed at the end."""
    daemon = DaemonProcess(state_dir, *args, env=env)
    try:
        yield daemon
    finally:
        end_daemon(daemon)


def end_daemon(daemon: DaemonProcess) -> None:
    """Kill a daemon under test and every upgrade successor serving its state dir."""
    if daemon.process.poll() is None:
        daemon.process.kill()
        daemon.process.wait(timeout=30)
    # Upgrade successors are not our children: find them by their state dir.
    for pid in daemons_of(daemon.state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
    daemon.http.close()
    daemon._log.close()
    root = discover()
    if root is not None:  # the run cgroups of the daemons killed (a stop removes its own)
        root.sweep()


def daemons_of(state_dir: Path) -> list[int]:
    """Pids of the daemon processes (any generation) serving `state_dir`."""
    found = []
    wanted = f"--state-dir\0{state_dir}\0".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if wanted in (entry / "cmdline").read_bytes() and is_running(int(entry.name)):
                    found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for a module of web page tests (not for the session:
    Playwright's sync API keeps an event loop that other tests' asyncio.run would meet)."""
    from tests.daemon.web import CHROMIUM, CHROMIUM_ARGS  # noqa: PLC0415 - web imports us

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), made by openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl(1) is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
