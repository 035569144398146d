"""Hot upgrade, both sides of the handshake (tableflip-style, over one socket pair).

The old generation (`Upgrader`) starts `python -m evercron <its own arguments>` from the
code and config on disk, passing the listening sockets, the serve lock and one end of a
control socket as inherited descriptors, named in `EVERCRON_UPGRADE`. The new generation
(`Predecessor` is its view of the old one) serves and schedules, then sends `ready`; the
old one stops accepting and scheduling and answers `ack`; only then does the new one write
shared state (config jobs, pid file). A new process that fails, exits or is not ready
within the timeout is killed and the old one carries on; its error travels back as
`UpgradeError`.

Messages are JSON lines: new -> old `{"ready": pid}` or `{"error": text}`; old -> new
`{"ack": true}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("evercron.daemon")
ENV = "EVERCRON_UPGRADE"
_MESSAGE_LIMIT = 64 * 1024


class UpgradeError(RuntimeError):
    """The upgrade failed and the old process keeps serving; the message says why
    (with the new process's own error when it reported one)."""


class UpgradeBusy(UpgradeError):
    """Refused before trying: another upgrade is still waiting for its new process, or
    this process already handed over or is stopping."""


@dataclass(frozen=True)
class Handover:
    """A successful handover: the new process, its generation, how long it took."""

    pid: int
    generation: int
    seconds: float


class Upgrader:
    """The old generation's side: start one successor at a time and hand over to it.

    `descriptors()` names what the successor inherits (listening sockets, serve lock);
    `environment()` adds variables it must get back (e.g. `NOTIFY_SOCKET`).
    """

    def __init__(
        self,
        arguments: list[str],
        generation: int,
        timeout: float,
        descriptors: Callable[[], Mapping[str, int]],
        environment: Callable[[], Mapping[str, str]],
    ) -> None:
        self.arguments = arguments
        self.generation = generation
        self.timeout = timeout
        self._descriptors = descriptors
        self._environment = environment
        self._pending: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._aborted = False
        self.successor: subprocess.Popen[bytes] | None = None

    @property
    def in_progress(self) -> bool:
        """Whether a new process is starting and not ready yet."""
        return self._pending is not None

    def command(self) -> list[str]:
        """The new process's command line: this program, from the code now on disk."""
        return [sys.executable, "-m", "evercron", *self.arguments]

    async def start_successor(self) -> Handover:
        """Start the new process and wait until it serves; raises `UpgradeBusy` while
        another one starts and `UpgradeError` (after killing it) when it fails."""
        if self._pending is not None:
            raise UpgradeBusy(
                f"an upgrade is already in progress (new process pid {self._pending.pid} "
                "is starting); try again once it is ready"
            )
        if self.successor is not None:
            raise UpgradeBusy(
                f"this process already handed over to pid {self.successor.pid}; "
                "send the upgrade to the serving process"
            )
        began = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = {**self._descriptors(), "control": theirs.fileno()}
        settings = {"fds": fds, "generation": self.generation + 1, "parent": os.getpid()}
        environment = {**os.environ, **self._environment(), ENV: json.dumps(settings)}
        try:
            process = subprocess.Popen(
                self.command(),
                pass_fds=tuple(fds.values()),
                env=environment,
                stdin=subprocess.DEVNULL,
            )
        except OSError as error:
            ours.close()
            raise UpgradeError(f"cannot start the new process: {error}") from None
        finally:
            theirs.close()
        self._pending = process
        log.info("upgrade: started generation %d as pid %d", self.generation + 1, process.pid)
        try:
            message = await asyncio.wait_for(_read_message(ours), self.timeout)
        except TimeoutError:
            await self._abandon(process, ours)
            raise UpgradeError(
                f"the new process (pid {process.pid}) was not ready within {self.timeout:g}s "
                "(upgrade_timeout); it was killed"
            ) from None
        except BaseException:
            await self._abandon(process, ours)
            raise
        finally:
            self._pending = None
        if message is None or "ready" not in message:
            await self._abandon(process, ours)
            if self._aborted:
                self._aborted = False
                raise UpgradeError(
                    "upgrade abandoned: the daemon is stopping; the new process was killed"
                )
            reason = message.get("error") if message else None
            if reason:
                raise UpgradeError(f"the new process (pid {process.pid}) failed: {reason}")
            raise UpgradeError(
                f"the new process (pid {process.pid}) exited with code {process.returncode} "
                "before it was ready"
            )
        self._control = ours
        self.successor = process
        return Handover(process.pid, self.generation + 1, time.monotonic() - began)

    def abort(self) -> None:
        """Kill a successor that is still starting (the old process is stopping)."""
        if self._pending is not None:
            self._aborted = True
            with contextlib.suppress(ProcessLookupError):
                self._pending.kill()

    def acknowledge(self) -> None:
        """Tell the successor the handover is complete (it may write shared state now)."""
        if self._control is None:
            return
        with contextlib.suppress(OSError):
            self._control.setblocking(True)
            self._control.sendall(b'{"ack": true}\n')
        self._control.close()
        self._control = None

    async def _abandon(self, process: subprocess.Popen[bytes], control: socket.socket) -> None:
        control.close()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)


class Predecessor:
    """The new generation's view of the one it replaces: what it inherited, and the
    control socket to report ready (or failure) on."""

    def __init__(self, pid: int, generation: int, fds: dict[str, int]) -> None:
        self.pid = pid
        self.generation = generation
        self.fds = fds
        control = fds.pop("control", None)
        self._control = socket.socket(fileno=control) if control is not None else None
        if self._control is not None:
            self._control.set_inheritable(False)

    @classmethod
    def from_environ(cls) -> Predecessor | None:
        """The predecessor that started this process, or None (a first start). Removes
        `EVERCRON_UPGRADE` from the environment so jobs never see it."""
        text = os.environ.pop(ENV, None)
        if not text:
            return None
        try:
            settings = json.loads(text)
            fds = {str(name): int(fd) for name, fd in settings["fds"].items()}
            return cls(int(settings["parent"]), int(settings["generation"]), fds)
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as error:
            raise UpgradeError(f"{ENV} is malformed: {error}") from None

    def fail(self, message: str) -> None:
        """Report why this process cannot take over (the old one keeps serving)."""
        self._send({"error": message})
        self._close()

    async def report_ready(self) -> bool:
        """Say this process serves, and wait for the old one to let go. False when the old
        process went away without acknowledging (this one carries on alone)."""
        self._send({"ready": os.getpid()})
        if self._control is None:
            return False
        try:
            message = await _read_message(self._control)
        finally:
            self._close()
        return bool(message and message.get("ack"))

    def _send(self, message: dict[str, Any]) -> None:
        if self._control is None:
            return
        with contextlib.suppress(OSError):
            self._control.setblocking(True)
            self._control.sendall(json.dumps(message).encode() + b"\n")

    def _close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None


async def _read_message(sock: socket.socket) -> dict[str, Any] | None:
    """One JSON line from `sock`; None at end of file (the other side exited)."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    buffer = b""
    while b"\n" not in buffer:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            return None
        buffer += data
        if len(buffer) > _MESSAGE_LIMIT:
            return {"error": "the new process sent an oversized message"}
    try:
        message = json.loads(buffer.split(b"\n", 1)[0])
    except ValueError:
        return {"error": f"the new process sent a malformed message: {buffer[:200]!r}"}
    return message if isinstance(message, dict) else None
