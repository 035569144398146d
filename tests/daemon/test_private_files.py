"""Files with secrets in the state dir are 0600, whatever the umask and the dir's mode."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.daemon.conftest import DaemonProcess

SECRET_FILES = ("evercron.db", "evercron.db-wal", "evercron.db-shm", "token", "daemon.json")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The umask the daemon started inside inherits."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(state_dir: Path) -> dict[str, int]:
    return {name: (state_dir / name).stat().st_mode & 0o777 for name in SECRET_FILES}


def test_secrets_are_private_in_a_state_dir_open_to_all(start_daemon: Any, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o755)
    state_dir.chmod(0o755)
    with umask(0o022):
        daemon: DaemonProcess = start_daemon(env={"EVERCRON_TOKEN": ""})
    daemon.add_job(name="secret", schedule="@yearly", command="true", env={"KEY": "hunter2"})
    assert modes(state_dir) == dict.fromkeys(SECRET_FILES, 0o600)
    # Killed, it leaves SQLite's -wal and -shm files behind; make every file as an older
    # release left it, readable by every local user. The next start fixes that.
    daemon.stop(signal.SIGKILL)
    for name in SECRET_FILES:
        (state_dir / name).chmod(0o644)
    with umask(0o022):
        daemon = start_daemon(env={"EVERCRON_TOKEN": ""})
    assert modes(state_dir) == dict.fromkeys(SECRET_FILES, 0o600)
