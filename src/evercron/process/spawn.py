"""Starting the process: environment, executable lookup, user switch, limits - and errors
that read like `os/exec`'s instead of tracebacks.

Limits and nice are applied before the command runs by exec'ing through `nice(1)` and
`prlimit(1)` (which set them on themselves, then exec the command): the child is never
run through `preexec_fn`, which disables vfork and is unsafe with threads.

Two ways to create the process: posix_spawn - about two thirds of Popen's cost, and
all of it system calls that a worker thread can make while the event loop computes the
next start - once this process's descriptors are sealed (`descriptors.py`), and Popen for
what posix_spawn cannot do (a working directory, a umask, another user, a program found
through PATH). posix_spawn is called through libc where it can be (`libc_spawn.py`):
`os.posix_spawn` keeps the GIL until the child has exec'd.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import io
import os
import pwd
import shlex
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evercron.process import libc_spawn
from evercron.process.cgroup import RunCgroup
from evercron.process.descriptors import sealed
from evercron.process.direct_line import DirectLine, Redirection, parse_direct
from evercron.process.fork_gate import FORK_GATE
from evercron.process.shell_exec import exec_form
from evercron.process.short_memory import ShortMemory
from evercron.process.spec import DEFAULT_SHELL, Command, Limit

_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM}


class SpawnError(Exception):
    """The command could not be started; `exit_code` is the shell's code for it
    (127 not found, 126 not executable) or None when the cause is not the executable."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(slots=True)
class SpawnedChild:
    """A command started through `posix_spawn`: its pid, a pidfd for it, and this side of
    its pipes (`stdin` only when it reads from a pipe of its own; `stdout` and `stderr`
    already non-blocking)."""

    pid: int
    pidfd: int
    stdin: io.FileIO | None
    stdout: io.FileIO
    stderr: io.FileIO


Child = subprocess.Popen[bytes] | SpawnedChild
"""A started command, however it was started."""

# Popen's restore_signals: what Python ignores must not stay ignored in the command.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


@dataclass(frozen=True)
class _Identity:
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


class PreparedStart:
    """A start made ready on the caller's thread; `launch()` creates the process, on any
    thread (it blocks until the command has exec'd)."""

    def __init__(
        self,
        command: Command,
        run_id: str,
        plan: StartPlan,
        held: bool,
        hold_stdin: int | None,
    ) -> None:
        self._command = command
        self._run_id = run_id
        self._plan = plan
        self._held = held
        self._hold_stdin = hold_stdin
        self._prepare()

    def _prepare(self) -> None:
        """What is done on the caller's thread (raises `SpawnError`)."""

    def launch(self) -> Child:
        """Create the process; raise `SpawnError` on failure."""
        raise NotImplementedError


def prepare_start(
    command: Command,
    run_id: str,
    cgroup: RunCgroup | None = None,
    held: bool = False,
    hold_stdin: int | None = None,
) -> PreparedStart:
    """Get the start of `command` ready (see `start_process`). For a start through
    posix_spawn, the arguments and environment are computed here and `launch()` makes
    the pipes and the process - system calls, each of which lets other threads take the
    GIL, so they belong on a worker rather than on the busy event loop. Raises
    `SpawnError`."""
    plan = plan_start(command, cgroup, held)
    kind = _DirectStart if plan.direct else _PopenStart
    return kind(command, run_id, plan, held, hold_stdin)


def start_process(
    command: Command,
    run_id: str,
    cgroup: RunCgroup | None = None,
    held: bool = False,
    hold_stdin: int | None = None,
) -> Child:
    """Start `command` in a new session (and `cgroup`) with piped output; raise
    `SpawnError` on failure. When `held`, the command waits before it execs until it
    reads a line on its stdin - a pipe of its own, or `hold_stdin` (a group's) - and
    never runs if that pipe closes first."""
    return prepare_start(command, run_id, cgroup, held, hold_stdin).launch()


class _PopenStart(PreparedStart):
    """A start through Popen: all of it happens in `launch()` (it may look up users and
    programs, which can take a while)."""

    def launch(self) -> Child:
        command, held = self._command, self._held
        env, identity = _environment(command, self._run_id)
        cwd = command.cwd
        if cwd is not None and not os.path.isdir(cwd):
            raise SpawnError(f"chdir {cwd}: no such directory")
        program = command.argv[0]
        argv, identity = _command_line(command, env, identity, self._plan, held)
        host = self._plan.host
        with host.hosting() if host is not None else FORK_GATE.shared():
            return _popen(command, argv, env, cwd, identity, held, program, self._hold_stdin)


class _DirectStart(PreparedStart):
    """A start through posix_spawn: the arguments and environment are made here;
    `launch()` makes the pipes and spawns. The cgroup is not checked here: the
    trampoline makes it again itself if it was removed meanwhile."""

    def _prepare(self) -> None:
        command, hold_stdin = self._command, self._hold_stdin
        self._env, _ = _environment(command, self._run_id)
        self._program = command.argv[0]
        self._argv, _ = _command_line(command, self._env, _Identity(), self._plan, self._held)
        self._own_stdin = hold_stdin is None and bool(command.stdin or self._held)
        self._line = self._plan.shell_free
        if self._line is not None:  # exported as the shell would (it is the fallback too)
            self._env[b"PWD"] = _shell_pwd(self._env.get(b"PWD"))

    def launch(self) -> Child:
        # Every descriptor made here is close-on-exec; the command gets the dup2'ed ones.
        made: list[int] = []
        try:
            stdin_ours: int | None = None
            stdin_source = self._hold_stdin
            if self._own_stdin:
                stdin_source, stdin_ours = os.pipe()
                made += (stdin_source, stdin_ours)
            stdout_ours, stdout_theirs = os.pipe()
            made += (stdout_ours, stdout_theirs)
            stderr_ours, stderr_theirs = os.pipe()
            made += (stderr_ours, stderr_theirs)
            stdin_given = os.devnull if stdin_source is None else stdin_source
            with FORK_GATE.shared():
                pid = self._spawn(stdin_given, stdout_theirs, stderr_theirs)
        except OSError as error:
            for fd in made:
                os.close(fd)
            raise _spawn_error(self._program, error) from None
        os.close(stdout_theirs)
        os.close(stderr_theirs)
        if stdin_ours is not None:
            os.close(stdin_source)  # type: ignore[arg-type]
        try:
            # Done here rather than by the event loop, for which each system call means
            # winning the GIL back from the workers.
            os.set_blocking(stdout_ours, False)
            os.set_blocking(stderr_ours, False)
            pidfd = os.pidfd_open(pid)
        except OSError as error:  # out of descriptors: the command must not run unwatched
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # (reaped as a stray: its pid is not ours)
            for ours in (stdin_ours, stdout_ours, stderr_ours):
                if ours is not None:
                    os.close(ours)
            raise _spawn_error(self._program, error) from None
        return SpawnedChild(
            pid,
            pidfd,
            io.FileIO(stdin_ours, "wb") if stdin_ours is not None else None,
            io.FileIO(stdout_ours, "rb"),
            io.FileIO(stderr_ours, "rb"),
        )

    def _spawn(self, stdin: int | str, stdout: int, stderr: int) -> int:
        line = self._line
        if line is not None:
            program = _find_program(line.program, self._env)
            if program is not None:
                with contextlib.suppress(OSError):  # the shell reports it (and may cope)
                    return _posix_spawn(
                        list(line.argv),
                        self._env,
                        stdin,
                        stdout,
                        stderr,
                        program,
                        line.redirections,
                    )
        return _posix_spawn(self._argv, self._env, stdin, stdout, stderr)


def _posix_spawn(
    argv: list[str],
    env: dict[bytes, bytes],
    stdin: int | str,
    stdout: int,
    stderr: int,
    path: str | None = None,
    redirections: Sequence[Redirection] = (),
) -> int:
    """posix_spawn `path` (default `argv[0]`) in a new session with default SIGPIPE/SIGXFSZ
    and nothing blocked, `redirections` applied after descriptors 0-2 are set; through
    libc with the GIL released where possible (see `libc_spawn`)."""
    path = argv[0] if path is None else path
    if libc_spawn.available() and not (isinstance(stdin, int) and stdin <= 2):
        return libc_spawn.spawn(path, argv, env, stdin, stdout, stderr, redirections)
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0)
        if isinstance(stdin, str)
        else (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    for step in redirections:
        if step.path is not None:
            actions.append((os.POSIX_SPAWN_OPEN, step.fd, step.path, step.flags, 0o666))
        elif step.source is not None:
            actions.append((os.POSIX_SPAWN_DUP2, step.source, step.fd))
        else:
            actions.append((os.POSIX_SPAWN_CLOSE, step.fd))
    return os.posix_spawn(
        path,
        argv,
        env,
        file_actions=actions,
        setsid=True,
        setsigdef=_DEFAULT_SIGNALS,
        setsigmask=(),
    )


def runs_without_shell(command: Command) -> bool:
    """Whether `command`, started neither held nor in a cgroup, runs without /bin/sh: a
    shell line that is only a program, literal words and simple redirections (see
    `direct_line`) - one exec per run instead of two."""
    return plan_start(command).shell_free is not None


def _find_program(name: str, env: dict[bytes, bytes]) -> str | None:
    """Where the shell would find program `name` in the command's PATH (None if it would
    not: it then says so itself). Remembered for `_LOOKUP_TTL` seconds, as a shell's
    hash table remembers it - a thousand starts a second would otherwise make ten
    thousand `access` calls."""
    if "/" in name:
        return name
    search = env.get(b"PATH", _DEFAULT_PATH.encode())
    return _lookups.get((name, search), _search_path)


def _search_path(key: tuple[str, bytes]) -> str | None:
    name, search = key
    return shutil.which(name, path=search.decode(errors="surrogateescape"))


def _shell_pwd(given: bytes | None) -> bytes:
    """The PWD that /bin/sh exports: the inherited one if it names the working directory,
    else the working directory's path (remembered for `_LOOKUP_TTL` seconds)."""
    return _working_directories.get(given, _look_up_pwd)


def _look_up_pwd(given: bytes | None) -> bytes:
    if given is not None and given.startswith(b"/"):
        with contextlib.suppress(OSError):
            if os.path.samestat(os.stat(given), os.stat(".")):
                return given
    return os.fsencode(os.getcwd())


_LOOKUP_TTL = 1.0
_lookups: ShortMemory[tuple[str, bytes], str | None] = ShortMemory(_LOOKUP_TTL)
_working_directories: ShortMemory[bytes | None, bytes] = ShortMemory(_LOOKUP_TTL)


def _command_line(
    command: Command,
    env: dict[bytes, bytes],
    identity: _Identity,
    plan: StartPlan,
    held: bool,
) -> tuple[list[str], _Identity]:
    """The arguments to exec - the command behind its trampoline and wrappers - and the
    identity still to switch to. A cgroup to join is made again by the trampoline if it
    was removed meanwhile."""
    program = command.argv[0]
    wrappers = _wrappers(command)
    script, joining = plan.script, plan.joining
    argv = command.argv
    if script is not None and (joining is not None or held):
        argv = _trampoline(joining, held, script)
    elif joining is not None or held:
        if joining is not None:
            # The cgroup is joined by a root shell first; the user switch comes after it.
            wrappers = _switch_identity(identity) + wrappers
            identity = _Identity()
        wrappers = _trampoline(joining, held) + wrappers
    if wrappers:  # the wrapper would hide a missing program behind its own exit code
        path = env.get(b"PATH", _DEFAULT_PATH.encode()).decode(errors="surrogateescape")
        _check_executable(program, path, command.cwd)
    return wrappers + argv, identity


@dataclass(frozen=True)
class StartPlan:
    """How one start is made, decided once (`plan_start`) and followed by every step.

    - `script`: a /bin/sh command line the trampoline shell runs itself (no extra exec);
    - `host`: the cgroup this process steps into to fork the command there;
    - `joining`: the cgroup the command joins by itself, through the trampoline;
    - `direct`: created through posix_spawn (else Popen);
    - `shell_free`: the command line run without any /bin/sh (see `direct_line`).
    """

    script: str | None
    host: RunCgroup | None
    joining: RunCgroup | None
    direct: bool
    shell_free: DirectLine | None


def plan_start(command: Command, cgroup: RunCgroup | None = None, held: bool = False) -> StartPlan:
    """The one decision of how `command` starts (in `cgroup`, `held` or not)."""
    # A command line for /bin/sh with nothing around it is run by a /bin/sh that first
    # joins the cgroup and/or waits for the release itself: no extra exec, and no
    # visit of this whole process to the group.
    plain = command.nice is None and not command.limits
    own_identity = command.user is None and command.group is None
    is_line = isinstance(command.args, str) and command.shell == DEFAULT_SHELL
    script = command.args if is_line and plain and own_identity else None
    assert script is None or isinstance(script, str)
    # Else a direct start is forked inside its cgroup where this process may step in;
    # otherwise (and for held starts) a /bin/sh trampoline joins it before the command.
    hostable = cgroup is not None and not held and script is None and cgroup.can_host
    host = cgroup if hostable else None
    joining = cgroup if host is None else None
    direct = _can_spawn_directly(command, host, joining, held, script)
    bare = not held and cgroup is None and command.cwd is None
    shell_free = parse_direct(command.args) if direct and bare and script is not None else None
    return StartPlan(script, host, joining, direct, shell_free)


def _can_spawn_directly(
    command: Command,
    host: RunCgroup | None,
    joining: RunCgroup | None,
    held: bool,
    script: str | None,
) -> bool:
    """Whether the start goes through `posix_spawn`: cheap, and quick enough for an
    event loop even when many start at once. That needs sealed descriptors (see
    `descriptors.py`), no working directory, umask or identity of its own to set, no
    visit of a cgroup, and a program given by path (a bare name is left to Popen, which
    searches the command's PATH and reports a missing program precisely)."""
    if not sealed() or command.cwd is not None or command.umask is not None:
        return False
    if command.user is not None or command.group is not None:
        return False  # looking users up may take a while: not on the caller's thread
    if host is not None:
        return False
    through_shell = joining is not None or held  # the trampoline: /bin/sh first
    wrapped = command.nice is not None or bool(command.limits)  # a tool by its full path
    return script is not None or through_shell or wrapped or "/" in command.argv[0]


def _popen(
    command: Command,
    argv: list[str],
    env: dict[bytes, bytes],
    cwd: str | None,
    identity: _Identity,
    held: bool,
    program: str,
    hold_stdin: int | None,
) -> subprocess.Popen[bytes]:
    if hold_stdin is not None:
        stdin: int = hold_stdin
    else:
        stdin = subprocess.PIPE if command.stdin or held else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
            umask=-1 if command.umask is None else command.umask,
            user=identity.user,
            group=identity.group,
            extra_groups=identity.extra_groups,
        )
    except OSError as error:
        raise _spawn_error(program, error) from None


def _spawn_error(program: str, error: OSError) -> SpawnError:
    if isinstance(error, FileNotFoundError):
        if "/" in program:
            return SpawnError(f'exec: "{program}": no such file or directory', 127)
        return SpawnError(f'exec: "{program}": executable file not found in $PATH', 127)
    if isinstance(error, PermissionError):
        return SpawnError(f'exec: "{program}": permission denied', 126)
    if error.errno in _RESOURCE_ERRORS:  # this process's limits, not the command's fault
        return SpawnError(
            f'cannot start "{program}": {error.strerror} (evercron is out of resources)'
        )
    return SpawnError(f'exec: "{program}": {error.strerror or error}', 126)


def _environment(command: Command, run_id: str) -> tuple[dict[bytes, bytes], _Identity]:
    env = _inherited_environment() if command.inherit_env else {}
    identity = _identity(command)
    overrides = dict(command.env)
    if command.user is not None:
        entry = pwd.getpwnam(command.user)
        overrides = {
            "HOME": entry.pw_dir,
            "USER": entry.pw_name,
            "LOGNAME": entry.pw_name,
            **overrides,
        }
    env.update((os.fsencode(k), os.fsencode(v)) for k, v in overrides.items())
    env.setdefault(b"PATH", _DEFAULT_PATH.encode())
    env[b"EVERCRON_RUN_ID"] = run_id.encode()
    return env, identity


def _inherited_environment() -> dict[bytes, bytes]:
    """A copy of this process's environment, as bytes (on every start: it may change)."""
    # os.environb keeps the bytes in a plain dict: copying that is a hundred times
    # cheaper than walking the mapping (which decodes and re-encodes each variable).
    data = getattr(os.environb, "_data", None)
    if isinstance(data, dict):
        return data.copy()
    return dict(os.environb)


def _identity(command: Command) -> _Identity:
    if command.user is None and command.group is None:
        return _Identity()
    if os.geteuid() != 0:
        raise SpawnError("running a command as another user or group needs root")
    user = gid = None
    extra: list[int] | None = None
    if command.user is not None:
        try:
            entry = pwd.getpwnam(command.user)
        except KeyError:
            raise SpawnError(f'unknown user "{command.user}"') from None
        user, gid = entry.pw_uid, entry.pw_gid
        extra = os.getgrouplist(entry.pw_name, entry.pw_gid)
    if command.group is not None:
        try:
            gid = grp.getgrnam(command.group).gr_gid
        except KeyError:
            raise SpawnError(f'unknown group "{command.group}"') from None
    return _Identity(user, gid, extra)


def _check_executable(program: str, path: str, cwd: str | None) -> None:
    if "/" in program:
        full = os.path.join(cwd or ".", program)
        if not os.path.exists(full):
            raise SpawnError(f'exec: "{program}": no such file or directory', 127)
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise SpawnError(f'exec: "{program}": permission denied', 126)
    elif shutil.which(program, path=path) is None:
        raise SpawnError(f'exec: "{program}": executable file not found in $PATH', 127)


def _wrappers(command: Command) -> list[str]:
    prefix: list[str] = []
    if command.nice is not None:
        prefix += [_tool("nice", "coreutils"), "-n", str(command.nice)]
    if command.limits:
        prefix.append(_tool("prlimit", "util-linux"))
        prefix += [f"--{name}={_limit_text(value)}" for name, value in command.limits.items()]
        prefix.append("--")
    return prefix


def _trampoline(cgroup: RunCgroup | None, held: bool, script: str | None = None) -> list[str]:
    """A /bin/sh that joins `cgroup` and/or waits for the release line, then execs the
    arguments that follow - or, given a shell `script`, runs that script itself, as
    `sh -c script` would (`$0` the shell's own name, no arguments)."""
    steps = []
    if cgroup is not None:
        # A pooled group removed behind our back is made again (by whoever runs this).
        procs, group = shlex.quote(cgroup.procs_path), shlex.quote(str(cgroup.path))
        steps.append(f"[ -d {group} ] || mkdir -p {group}; echo $$ > {procs} || exit")
        # Then the v1 groups that hold its limits (made with their limits: never again
        # here, where they would have none).
        steps.extend(f"echo $$ > {shlex.quote(procs)} || exit" for procs in cgroup.v1_procs)
    if held:
        steps.append("IFS= read -r _ || exit")
        steps.append("exec 0</dev/null")
    if script is not None:
        # One line of our own, then the script from the next line: the shell runs each
        # line before it parses the next, so the join and the wait come first (even
        # before a syntax error of the script is found), with no `eval` in between.
        return ["/bin/sh", "-c", "; ".join(steps) + "\n" + exec_form(script)]
    return ["/bin/sh", "-c", "; ".join([*steps, 'exec "$@"']), "evercron-trampoline"]


def _switch_identity(identity: _Identity) -> list[str]:
    if identity.user is None and identity.group is None:
        return []
    argv = [_tool("setpriv", "util-linux")]
    if identity.user is not None:
        argv.append(f"--reuid={identity.user}")
    if identity.group is not None:
        argv.append(f"--regid={identity.group}")
    if identity.extra_groups is not None:
        groups = ",".join(map(str, identity.extra_groups))
        argv.append(f"--groups={groups}" if groups else "--clear-groups")
    return [*argv, "--"]


def _limit_text(value: Limit) -> str:
    soft, hard = value if isinstance(value, tuple) else (value, value)
    return f"{soft}:{hard}"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name, path=_DEFAULT_PATH + ":/usr/sbin:/sbin")
    if found is None:
        raise SpawnError(f"{name}(1) is needed for this command's settings: install {package}")
    return found
