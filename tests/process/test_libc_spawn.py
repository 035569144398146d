"""posix_spawn through libc: the GIL is free while the child starts, and it behaves as
`os.posix_spawn` does (the fallback, tested here too)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from evercron.process import libc_spawn, spawn

pytestmark = pytest.mark.skipif(not libc_spawn.available(), reason="needs glibc 2.26+")


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_to_end(read: int, write: int) -> bytes:
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    return data


def test_other_threads_run_python_while_the_child_starts(tmp_path: Path) -> None:
    # The child's stdin is a FIFO: it blocks opening it, before its exec, until another
    # thread of the parent opens the FIFO for writing. That thread runs Python: with the
    # GIL held through the spawn (as os.posix_spawn does) this never ends.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = textwrap.dedent(
        f"""
        import os, threading, time
        from evercron.process import libc_spawn
        assert libc_spawn.available()
        def writer():
            time.sleep(0.3)
            os.close(os.open({str(fifo)!r}, os.O_WRONLY))
        threading.Thread(target=writer).start()
        read, write = os.pipe()
        pid = libc_spawn.spawn("/bin/true", ["true"], {{}}, {str(fifo)!r}, write, write)
        print(os.waitpid(pid, 0)[1])
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        # Let the child blocked on the FIFO go (it then runs /bin/true and exits).
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        raise AssertionError("the spawn held the GIL until the child's exec") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_output_and_environment(pipe: tuple[int, int]) -> None:
    read, write = pipe
    env = {b"GREETING": b"hello"}
    pid = libc_spawn.spawn(
        "/bin/sh", ["sh", "-c", 'echo "$GREETING"'], env, os.devnull, write, write
    )
    assert _read_to_end(read, write) == b"hello\n"
    assert os.waitpid(pid, 0)[1] == 0


def test_a_new_session_and_clean_signals(pipe: tuple[int, int]) -> None:
    # Read by the spawned process itself: a shell's own mask is all-blocked for a moment
    # each time it forks a command.
    read, write = pipe
    assert signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN  # (as in the daemon)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        pid = libc_spawn.spawn(
            "/bin/grep",
            ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
            {},
            os.devnull,
            write,
            write,
        )
        asleep = libc_spawn.spawn("/bin/sleep", ["sleep", "30"], {}, os.devnull, write, write)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    try:
        assert os.getsid(asleep) == asleep  # its own session
    finally:
        os.kill(asleep, signal.SIGKILL)
        os.waitpid(asleep, 0)
    lines = _read_to_end(read, write).decode().splitlines()
    assert os.waitpid(pid, 0)[1] == 0
    blocked = int(lines[0].split()[1], 16)
    ignored = int(lines[1].split()[1], 16)
    assert blocked == 0  # SIGUSR1 was blocked here
    assert not ignored & (1 << (signal.SIGPIPE - 1))  # at its default there


def test_an_exec_failure_is_an_oserror_naming_the_program(pipe: tuple[int, int]) -> None:
    _, write = pipe
    with pytest.raises(OSError) as caught:
        libc_spawn.spawn("/nonexistent/program", ["program"], {}, os.devnull, write, write)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == "/nonexistent/program"


def test_a_nul_byte_is_refused_not_cut_short(pipe: tuple[int, int]) -> None:
    _, write = pipe
    with pytest.raises(ValueError, match="null byte"):
        libc_spawn.spawn("/bin/echo", ["echo", "a\0b"], {}, os.devnull, write, write)
    with pytest.raises(ValueError, match="null byte"):
        libc_spawn.spawn("/bin/true", ["true"], {b"A": b"x\0y"}, os.devnull, write, write)


def test_standard_descriptors_cannot_be_handed_over(pipe: tuple[int, int]) -> None:
    _, write = pipe
    with pytest.raises(ValueError, match="above 2"):
        libc_spawn.spawn("/bin/true", ["true"], {}, 0, write, write)


@pytest.mark.parametrize("through_libc", [True, False], ids=["libc", "os.posix_spawn"])
def test_both_ways_start_the_same(
    through_libc: bool, pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not through_libc:
        monkeypatch.setattr(libc_spawn, "available", lambda: False)
    read, write = pipe
    stdin_read, stdin_write = os.pipe()
    os.write(stdin_write, b"given\n")
    os.close(stdin_write)
    try:
        pid = spawn._posix_spawn(
            ["/bin/sh", "-c", "read line; echo got $line; exit 3"], {}, stdin_read, write, write
        )
    finally:
        os.close(stdin_read)
    assert _read_to_end(read, write) == b"got given\n"
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3
