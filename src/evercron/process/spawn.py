"""Starting the process: environment, executable lookup, user switch, limits - and errors
that read like `os/exec`'s instead of tracebacks.

Limits and nice are applied before the command runs by exec'ing through `nice(1)` and
`prlimit(1)` (which set them on themselves, then exec the command): the child is never
run through `preexec_fn`, which disables vfork and is unsafe with threads.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from evercron.process.cgroup import FORK_GATE, RunCgroup
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


@dataclass(frozen=True)
class _Identity:
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


def start_process(
    command: Command,
    run_id: str,
    cgroup: RunCgroup | None = None,
    held: bool = False,
    hold_stdin: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` in a new session (and `cgroup`) with piped output; raise
    `SpawnError` on failure. When `held`, the command waits before it execs until it
    reads a line on its stdin - a pipe of its own, or `hold_stdin` (a group's) - and
    never runs if that pipe closes first."""
    env, identity = _environment(command, run_id)
    cwd = command.cwd
    if cwd is not None and not os.path.isdir(cwd):
        raise SpawnError(f"chdir {cwd}: no such directory")
    program = command.argv[0]
    wrappers = _wrappers(command)
    # A command line for /bin/sh with nothing around it is run by a /bin/sh that first
    # joins the cgroup and/or waits for the release itself: no extra exec, and no
    # visit of this whole process to the group.
    script = (
        command.args
        if isinstance(command.args, str)
        and command.shell == DEFAULT_SHELL
        and not wrappers
        and identity == _Identity()
        else None
    )
    # Else a direct start is forked inside its cgroup where this process may step in;
    # otherwise (and for held starts) a /bin/sh trampoline joins it before the command.
    hostable = cgroup is not None and not held and script is None and cgroup.can_host
    host = cgroup if hostable else None
    joining = cgroup if host is None else None
    argv = command.argv
    if joining is not None:
        joining.ensure()
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
        _check_executable(program, path, cwd)
    with host.hosting() if host is not None else FORK_GATE.shared():
        return _popen(command, wrappers + argv, env, cwd, identity, held, program, hold_stdin)


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
    except FileNotFoundError:
        if "/" in program:
            raise SpawnError(f'exec: "{program}": no such file or directory', 127) from None
        raise SpawnError(f'exec: "{program}": executable file not found in $PATH', 127) from None
    except PermissionError:
        raise SpawnError(f'exec: "{program}": permission denied', 126) from None
    except OSError as error:
        if error.errno in _RESOURCE_ERRORS:  # this process's limits, not the command's fault
            raise SpawnError(
                f'cannot start "{program}": {error.strerror} (evercron is out of resources)'
            ) from None
        raise SpawnError(f'exec: "{program}": {error.strerror or error}', 126) from None


def _environment(command: Command, run_id: str) -> tuple[dict[bytes, bytes], _Identity]:
    # Built as bytes from os.environb: a str copy of os.environ decodes and re-encodes every
    # variable on every run, which costs more than the fork itself.
    env = dict(os.environb) if command.inherit_env else {}
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
        steps.append(f"echo $$ > {shlex.quote(str(cgroup.procs_file))} || exit")
    if held:
        steps.append("IFS= read -r _ || exit")
        steps.append("exec 0</dev/null")
    if script is not None:
        # One line of our own, then the script from the next line: the shell runs each
        # line before it parses the next, so the join and the wait come first (even
        # before a syntax error of the script is found), with no `eval` in between.
        return ["/bin/sh", "-c", "; ".join(steps) + "\n" + script]
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
