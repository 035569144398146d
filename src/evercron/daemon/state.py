"""The daemon's state directory: locks, token, the address file, the pid file.

Layout (directory mode 0700):
  evercron.db          the embedded store (0600, as SQLite's -wal and -shm files: jobs
                       hold secrets)
  serve.lock           held by the serving daemon: a second `serve` is refused
  owners/<owner>.lock  one per daemon process: its runs are `lost` only once it is free
  owners/<owner>.json  that process's pid, generation, start time and role (serving or
                       draining), for `evercron status`
  token                the API token when none is configured (0600)
  daemon.json          {"url", "pid", "token"} of the serving daemon, for the CLI (0600)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any


class StateError(RuntimeError):
    """The state directory cannot be used (permissions, another daemon)."""


def prepare(state_dir: Path) -> None:
    """Create the directory (0700) and its `owners/` folder."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (state_dir / "owners").mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise StateError(f"cannot use state dir {state_dir}: {error.strerror}") from None
    if not os.access(state_dir, os.W_OK):
        raise StateError(f"cannot write to state dir {state_dir}")


class FileLock:
    """An exclusive `flock` on a file, held until `release()` or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when someone else holds it."""
        handle = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def adopt(self, fd: int) -> None:
        """Hold the lock through an inherited descriptor (an upgrade successor shares the
        predecessor's `flock`, which outlives the predecessor)."""
        handle = os.fdopen(fd, "a+")
        os.set_inheritable(fd, False)
        self._file = handle

    def fileno(self) -> int:
        """The descriptor holding the lock (to pass it on to a successor)."""
        if self._file is None:
            raise ValueError(f"lock {self.path} is not held")
        return self._file.fileno()

    def release(self, remove: bool = False) -> None:
        """Let go of the lock (and delete the file)."""
        if self._file is not None:
            if remove:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            self._file.close()
            self._file = None


def machine_id() -> str:
    """This machine's id (/etc/machine-id), else its host name."""
    with contextlib.suppress(OSError):
        found = Path("/etc/machine-id").read_text().strip()
        if found:
            return found
    return os.uname().nodename


def owner_is_alive(state_dir: Path, owner: str) -> bool:
    """Whether the daemon process `owner` still holds its lock (is alive)."""
    lock = FileLock(state_dir / "owners" / f"{owner}.lock")
    if not lock.path.exists():
        return False
    if lock.try_acquire():
        lock.release(remove=True)
        return False
    return True


def load_or_create_token(state_dir: Path) -> str:
    """The generated API token of this state dir, made on first use (mode 0600; one an
    older release left readable to others is made 0600)."""
    path = state_dir / "token"
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text().strip()
        if token:
            path.chmod(0o600)
            return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def write_private(path: Path, text: str) -> None:
    """Write a file atomically (temp file + rename) with mode 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a temporary file left behind keeps its own mode
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def write_address(state_dir: Path, url: str, token: str | None) -> None:
    """Tell local CLIs where the daemon listens (and the token, when generated here)."""
    data: dict[str, Any] = {"url": url, "pid": os.getpid()}
    if token is not None:
        data["token"] = token
    write_private(state_dir / "daemon.json", json.dumps(data) + "\n")


def read_address(state_dir: Path) -> dict[str, Any] | None:
    """What `write_address` wrote, or None."""
    try:
        data = json.loads((state_dir / "daemon.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_pid_file(path: Path) -> None:
    """Write this process's pid atomically (temp file + rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{os.getpid()}\n")
    os.replace(temporary, path)


def write_generation(state_dir: Path, owner: str, info: dict[str, Any]) -> None:
    """Publish what `evercron status` shows about this daemon process."""
    write_private(state_dir / "owners" / f"{owner}.json", json.dumps(info) + "\n")


def remove_generation(state_dir: Path, owner: str) -> None:
    """Forget this daemon process's published information (it is exiting)."""
    with contextlib.suppress(OSError):
        (state_dir / "owners" / f"{owner}.json").unlink()


def living_generations(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The published information of every daemon process still alive, by owner."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((state_dir / "owners").glob("*.json")):
        owner = path.stem
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not owner_is_alive(state_dir, owner):
            with contextlib.suppress(OSError):
                path.unlink()  # left by a process that died
        elif isinstance(info, dict):
            found[owner] = info
    return found
