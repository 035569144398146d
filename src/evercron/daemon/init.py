"""`evercron serve` as PID 1 (a container's init).

PID 1 cannot hand over and exit - the container would end - so it stays a small, stable
parent: it starts the real daemon as its child, reaps every process that is reparented to
it, forwards signals to the serving generation (SIGHUP starts a hot upgrade there; a stop
signal goes to every generation), learns which generation serves from a pipe each one
writes to once it serves, and exits with the serving generation's code once no
generation is left.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys

from evercron.daemon import upgrade

ENV = "EVERCRON_SUPERVISOR_FD"
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
_TICK = 0.2


def should_supervise() -> bool:
    """Whether this process is PID 1 and must start the daemon under itself."""
    return os.getpid() == 1 and ENV not in os.environ and upgrade.ENV not in os.environ


def take_report_fd() -> int | None:
    """The pipe on which a generation tells the supervisor it serves (None without a
    supervisor); removed from the environment so jobs never see it."""
    value = os.environ.pop(ENV, None)
    if value is None:
        return None
    with contextlib.suppress(ValueError, OSError):
        fd = int(value)
        os.set_inheritable(fd, False)
        return fd
    return None


def report_serving(fd: int | None) -> None:
    """Tell the supervisor (if any) that this process is the serving generation."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(fd, f"serving {os.getpid()}\n".encode())


def supervise(arguments: list[str]) -> int:
    """Run the daemon under this PID 1 until no generation is left; its exit code."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    environment = {**os.environ, ENV: str(write_end)}
    child = subprocess.Popen(
        [sys.executable, "-m", "evercron", *arguments], pass_fds=(write_end,), env=environment
    )
    os.close(write_end)
    serving = child.pid
    generations = {child.pid}
    codes: dict[int, int] = {}
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        pending.append(signum)

    for forwarded in _FORWARDED:
        signal.signal(forwarded, forward)
    buffer = b""
    open_pipe = True
    while True:
        while pending:
            signum = pending.pop(0)
            targets = {serving} if signum == signal.SIGHUP else generations
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        if open_pipe:
            with contextlib.suppress(InterruptedError):
                select.select([read_end], [], [], _TICK)
            try:
                data = os.read(read_end, 4096)
            except BlockingIOError:
                data = None
            if data == b"":
                open_pipe = False
            elif data:
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    word, _, number = line.decode(errors="replace").partition(" ")
                    if word == "serving" and number.isdigit():
                        serving = int(number)
                        generations.add(serving)
        else:
            with contextlib.suppress(InterruptedError):
                select.select([], [], [], _TICK)
        if not _reap_all(codes, generations) and not open_pipe:
            return codes.get(serving, 0)


def _reap_all(codes: dict[int, int], generations: set[int]) -> bool:
    """Reap every exited child (own or reparented); False once no child is left."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if pid in generations:
            generations.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            codes[pid] = code if code >= 0 else 128 - code
