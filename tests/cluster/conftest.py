"""Several `evercron serve` nodes on one PostgreSQL database (a fresh one per test)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import DaemonProcess, daemons_of, wait_gone

LEASE = "5s"


def node_config(path: Path, name: str, *extra: str) -> Path:
    """An evercron.toml for node `name` with a short lease and kill grace (tests)."""
    lines = ["[daemon]", f'node_name = "{name}"', f'node_lease = "{LEASE}"', *extra]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def start_node(tmp_path: Path, postgres_url: str) -> Iterator[Any]:
    """Start node NAME of the test's cluster (its own state dir, the shared database);
    every node is killed after the test."""
    started: list[DaemonProcess] = []

    def start(
        name: str, *args: str, config: list[str] | None = None, url: str | None = None
    ) -> DaemonProcess:
        state = tmp_path / name
        state.mkdir(exist_ok=True)
        conf = node_config(tmp_path / f"{name}.toml", name, *(config or []))
        daemon = DaemonProcess(
            state,
            "--config",
            str(conf),
            *args,
            env={"EVERCRON_DATABASE_URL": url or postgres_url},
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=30)
        for pid in daemons_of(daemon.state_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid)
        daemon.http.close()
        daemon._log.close()
