"""`posix_spawn` with the GIL released while the child starts.

`os.posix_spawn` holds the GIL until the new process has exec'd (glibc's vfork: the
parent waits for the child's exec). Under load that is most of a millisecond per start
during which no other thread of the daemon runs Python - the event loop included - so
starting a thousand commands a second froze the loop for most of every second. Called
through ctypes, `posix_spawn` itself runs with the GIL released; the small setup calls
(file actions, no system calls) keep it.

Only glibc is supported (its `posix_spawnattr_t` layout and the `POSIX_SPAWN_SETSID` flag,
glibc 2.26+); `available()` says whether this module can be used, else callers keep
`os.posix_spawn`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Sequence

from evercron.process.direct_line import Redirection

# glibc's flag values (spawn.h)
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# Opaque glibc structures, with room to spare (x86-64 sizes: attr 336, actions 80,
# sigset 128 bytes).
_ATTR_SIZE = 1024
_ACTIONS_SIZE = 256
_SIGSET_SIZE = 256

_setup_lock = threading.Lock()
_library: _Libc | None = None
_unavailable = False


class _Libc:
    """The libc functions, and one spawn attribute object shared by every start (new
    session, default SIGPIPE/SIGXFSZ, nothing blocked), read-only once made."""

    def __init__(self, default_signals: Sequence[int]) -> None:
        with_gil = ctypes.PyDLL(None)  # no system calls: no point releasing the GIL
        without_gil = ctypes.CDLL(None)
        self.actions_init = with_gil.posix_spawn_file_actions_init
        self.actions_destroy = with_gil.posix_spawn_file_actions_destroy
        self.add_dup2 = with_gil.posix_spawn_file_actions_adddup2
        self.add_dup2.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
        self.add_close = with_gil.posix_spawn_file_actions_addclose
        self.add_close.argtypes = (ctypes.c_void_p, ctypes.c_int)
        self.add_open = with_gil.posix_spawn_file_actions_addopen
        self.add_open.argtypes = (
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint,
        )
        self.spawn = without_gil.posix_spawn
        self.spawn.argtypes = (
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_char_p),
        )
        self.attr = ctypes.create_string_buffer(_ATTR_SIZE)
        self._sigdef = ctypes.create_string_buffer(_SIGSET_SIZE)
        self._sigmask = ctypes.create_string_buffer(_SIGSET_SIZE)
        _check(with_gil.sigemptyset(self._sigdef), "sigemptyset")
        _check(with_gil.sigemptyset(self._sigmask), "sigemptyset")
        for signum in default_signals:
            _check(with_gil.sigaddset(self._sigdef, int(signum)), "sigaddset")
        _check(with_gil.posix_spawnattr_init(self.attr), "posix_spawnattr_init")
        _check(with_gil.posix_spawnattr_setsigdefault(self.attr, self._sigdef), "setsigdefault")
        _check(with_gil.posix_spawnattr_setsigmask(self.attr, self._sigmask), "setsigmask")
        flags = ctypes.c_short(_SETSIGDEF | _SETSIGMASK | _SETSID)
        _check(with_gil.posix_spawnattr_setflags(self.attr, flags), "setflags")


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(result, f"{what}: {os.strerror(result)}")


def _glibc_version() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    name, _, version = text.partition(" ")
    if name != "glibc":
        return None
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    return major, minor


def available() -> bool:
    """Whether `spawn` can be used here (Linux with glibc 2.26 or later)."""
    global _library, _unavailable
    if _library is not None:
        return True
    if _unavailable:
        return False
    with _setup_lock:
        if _library is None and not _unavailable:
            version = _glibc_version()
            try:
                if version is None or version < (2, 26):
                    raise OSError("not glibc 2.26+")
                _library = _Libc((signal.SIGPIPE, signal.SIGXFSZ))
            except (OSError, AttributeError):
                _unavailable = True
    return _library is not None


def spawn(
    path: str,
    argv: Sequence[str],
    env: dict[bytes, bytes],
    stdin: int | str,
    stdout: int,
    stderr: int,
    redirections: Sequence[Redirection] = (),
) -> int:
    """Start `path` with `argv` and `env` in a new session, SIGPIPE and SIGXFSZ at their
    default, no signal blocked. `stdin` (a descriptor, or a file the child opens for
    reading, such as os.devnull), `stdout` and `stderr` become its descriptors 0-2, then
    `redirections` are applied in order; every other descriptor must be close-on-exec.
    Returns the pid; raises OSError as `os.posix_spawn` does (the exec's own error and a
    redirection's included). Call only when `available()`."""
    libc = _library
    assert libc is not None, "call available() first"
    for source in (stdin, stdout, stderr):
        if isinstance(source, int) and source <= 2:
            raise ValueError("the descriptors to hand over must be above 2")
    encoded_argv = [os.fsencode(arg) for arg in argv]
    argv_array = (ctypes.c_char_p * (len(encoded_argv) + 1))(*encoded_argv, None)
    entries = [key + b"=" + value for key, value in env.items()]
    if any(b"\0" in text for text in (*encoded_argv, *entries)):
        raise ValueError("embedded null byte")  # (C strings would end there silently)
    env_array = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
    actions = ctypes.create_string_buffer(_ACTIONS_SIZE)
    _check(libc.actions_init(actions), "posix_spawn_file_actions_init")
    try:
        if isinstance(stdin, str):
            _check(libc.add_open(actions, 0, os.fsencode(stdin), os.O_RDONLY, 0), "addopen")
        else:
            _check(libc.add_dup2(actions, stdin, 0), "adddup2")
        _check(libc.add_dup2(actions, stdout, 1), "adddup2")
        _check(libc.add_dup2(actions, stderr, 2), "adddup2")
        for step in redirections:
            if step.path is not None:
                target = os.fsencode(step.path)
                if b"\0" in target:
                    raise ValueError("embedded null byte")
                _check(libc.add_open(actions, step.fd, target, step.flags, 0o666), "addopen")
            elif step.source is not None:
                _check(libc.add_dup2(actions, step.source, step.fd), "adddup2")
            else:
                _check(libc.add_close(actions, step.fd), "addclose")
        pid = ctypes.c_int(0)
        error = libc.spawn(
            ctypes.byref(pid), os.fsencode(path), actions, libc.attr, argv_array, env_array
        )
    finally:
        libc.actions_destroy(actions)
    if error != 0:
        raise OSError(error, os.strerror(error), path)
    return pid.value
