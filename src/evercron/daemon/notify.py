"""sd_notify: tell the service manager (systemd) what the daemon is doing.

The protocol is one datagram of `KEY=value` lines to the unix socket named by
`NOTIFY_SOCKET` (a leading `@` means the abstract namespace). The variable is taken out of
the environment at start, so jobs never inherit it; successors get it back explicitly.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("evercron.daemon")
ENV = "NOTIFY_SOCKET"


class Notifier:
    """Sends state changes to the service manager; does nothing when there is none."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @classmethod
    def from_environ(cls) -> Notifier:
        """The notifier for this process (removes `NOTIFY_SOCKET` from the environment)."""
        return cls(os.environ.pop(ENV, None))

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` lines; False when there is no manager or it cannot be reached
        (a notification never stops the daemon)."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall("\n".join(assignments).encode())
        except OSError as error:
            log.warning("sd_notify to %s failed: %s", self.address, error)
            return False
        return True

    def ready(self, pid: int | None = None) -> None:
        """Serving (`READY=1`); with `pid`, that process is the service's main one now."""
        lines = [f"MAINPID={pid}"] if pid is not None else []
        self.send(*lines, "READY=1", f"STATUS=serving (pid {pid or os.getpid()})")

    def reloading(self) -> None:
        """A hot upgrade began (`RELOADING=1` with the monotonic time systemd expects)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=upgrading")

    def stopping(self) -> None:
        """Shutting down (`STOPPING=1`)."""
        self.send("STOPPING=1", "STATUS=stopping")
