"""A throwaway PostgreSQL server for the tests, from Debian's binaries.

One server per test session (`PostgresServer.start`): `initdb` into a temporary
directory, run as an unprivileged user when the tests run as root (the server refuses
root), listening on a free loopback port and on a socket in that directory. Each test gets
a database of its own, made from an empty template. The server is ended with the session,
and - because it is started with a parent-death signal - with the test process itself if
that is killed outright.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

TEMPLATE = "evercron_template"
SUPERUSER = "evercron"
_UNPRIVILEGED = "nobody"
_numbers = itertools.count(1)


class PostgresError(RuntimeError):
    """The test server could not be started or used; the message says why."""


def binaries() -> Path:
    """The newest installed server's bin directory (`scripts/ensure-postgresql`)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        raise PostgresError(
            "PostgreSQL's server binaries are missing: run scripts/ensure-postgresql "
            "(or apt-get install postgresql)"
        )
    return Path(found[-1]).parent


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One running server; `url(database)` to reach it, `database()` for a fresh one."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.base = Path(tempfile.mkdtemp(prefix="evercron-pg-"))
        self.data = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.port = free_port()
        self._user = pwd.getpwnam(_UNPRIVILEGED) if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None

    # -- life ------------------------------------------------------------------------

    @classmethod
    def start(cls) -> PostgresServer:
        """Create, start and wait for a server (raises `PostgresError` with its log)."""
        server = cls()
        try:
            server._init()
            server._launch()
            server._wait_ready()
            with server.connect("postgres") as db:
                db.execute(f"CREATE DATABASE {TEMPLATE}")
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        """End the server and delete its files."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._as_owner(
                    [str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"],
                    timeout=30,
                )
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)

    def restart_immediately(self) -> None:
        """`pg_ctl restart -m immediate`: the server stops at once, as in a crash (no
        checkpoint, every connection cut), then starts again on the same port."""
        self._as_owner(
            [str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w"],
            timeout=30,
        )
        assert self._process is not None
        self._process.wait(timeout=30)
        self._launch()
        self._wait_ready()

    # -- use -------------------------------------------------------------------------

    def url(self, database: str, user: str = SUPERUSER, password: str | None = None) -> str:
        """The connection URL of `database` over TCP on the loopback."""
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        """A plain autocommit connection (for the tests' own statements)."""
        return psycopg.connect(self.url(database), autocommit=True)

    def database(self) -> str:
        """A new, empty database made from the template; its name."""
        name = f"test_{os.getpid()}_{next(_numbers)}"
        with self.connect("postgres") as db:
            db.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    def drop(self, name: str) -> None:
        """Remove a test's database, cutting whatever still uses it."""
        with self.connect("postgres") as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    # -- plumbing --------------------------------------------------------------------

    def _init(self) -> None:
        if self._user is not None:
            os.chown(self.base, self._user.pw_uid, self._user.pw_gid)
        os.chmod(self.base, 0o755)
        self._as_owner(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            timeout=120,
        )

    def _launch(self) -> None:
        command = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.base}",
            "-c",
            "max_connections=300",
            "-c",
            "fsync=off",  # the machine does not crash in a test; the server may
            "-c",
            "full_page_writes=off",
        ]
        # The server dies with the test process, however that ends.
        wrapper = ["setpriv", "--pdeathsig", "KILL"]
        if self._user is not None:
            wrapper += [
                f"--reuid={self._user.pw_uid}",
                f"--regid={self._user.pw_gid}",
                "--clear-groups",
            ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps its own copy
        try:
            self._process = subprocess.Popen(
                [*wrapper, *command],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                start_new_session=True,  # a ^C in the terminal is for pytest alone
            )
        finally:
            log.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PostgresError(f"the test PostgreSQL server exited:\n{self._log()}")
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise PostgresError(f"the test PostgreSQL server did not start:\n{self._log()}")

    def _as_owner(self, command: list[str], timeout: float) -> None:
        if self._user is not None:
            command = [
                "setpriv",
                f"--reuid={self._user.pw_uid}",
                f"--regid={self._user.pw_gid}",
                "--clear-groups",
                *command,
            ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
            env={**os.environ, "LC_ALL": "C"},
        )
        if done.returncode != 0:
            program = Path(next(word for word in command if word.startswith("/"))).name
            raise PostgresError(f"{program}: {done.stdout}{done.stderr}".strip())

    def _log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return "(no log)"
