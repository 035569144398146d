"""The PostgreSQL store's connections: a pool, deadlines, and errors in the store's terms.

Every call runs in one transaction on a pooled connection and has a deadline. A database
that stops answering (a cut cable, a black-holing proxy, a stopped server) must not stall
a caller for minutes, and cancelling a psycopg query first waits for the server to confirm
the cancel - which a silent network never does. So at the deadline the connection's
socket is shut down under the query: libpq sees the end of the stream at once, the call
fails with `StoreUnavailable`, and the pool throws the connection away.

The password of the database URL never leaves this module: `describe` names the database
without it, and every error message is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from evercron.store.records import StoreError, StoreUnavailable

OPERATION_TIMEOUT = 10.0
"""Seconds a call may take before its connection is cut (a silent database)."""
CONNECT_TIMEOUT = 5
CHECK_IDLE = 2.0
"""A pooled connection idle longer than this is checked before use (the server may have
restarted meanwhile); one in steady use is not, which saves a round trip per call."""
Connection = AsyncConnection[tuple[Any, ...]]


def describe(url: str) -> str:
    """The database `url` names, without its password: `postgresql://user@host:port/db`."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql (an unreadable database URL)"
    user = parts.get("user")
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"postgresql://{f'{user}@' if user else ''}{host}:{port}/{parts.get('dbname', '')}"


def check_url(url: str) -> None:
    """Raise `StoreError` (without the password) when `url` is not a usable database URL."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise StoreError(
            "invalid database URL: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        ) from None


class Link:
    """A pool of connections to one database, with deadlines (see the module text)."""

    def __init__(self, url: str, *, max_size: int = 8, name: str = "evercron") -> None:
        check_url(url)
        self.url = url
        self.timeout = OPERATION_TIMEOUT
        """Seconds a call may take (see the module text)."""
        self.description = describe(url)
        self._password = str(conninfo_to_dict(url).get("password") or "")
        self._conninfo = make_conninfo(
            url,
            application_name=name,
            connect_timeout=conninfo_to_dict(url).get("connect_timeout") or CONNECT_TIMEOUT,
        )
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True},
            check=self._check,
            reset=self._returned,
            open=False,
            timeout=OPERATION_TIMEOUT,
            # Give up a connection attempt soon: the next call starts a fresh one, so a
            # database that comes back is used again within seconds, not minutes.
            reconnect_timeout=4.0,
        )
        self._opened = False
        self._last_use: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
        # Lost connections are reported as StoreUnavailable, once; not by the pool too.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

    async def _check(self, conn: Connection) -> None:
        last = self._last_use.get(conn)
        if last is None or time.monotonic() - last > CHECK_IDLE:
            # The check is a round trip too: a silent database must not hold it forever.
            cutter = asyncio.get_running_loop().call_later(self.timeout, cut, conn)
            try:
                await AsyncConnectionPool.check_connection(conn)
            finally:
                cutter.cancel()

    async def _returned(self, conn: Connection) -> None:
        self._last_use[conn] = time.monotonic()

    async def open(self) -> None:
        """Open the pool; raises `StoreUnavailable` when the database cannot be reached."""
        if self._opened:
            return
        self._opened = True
        await self._pool.open(wait=False)

    async def close(self) -> None:
        """Close every connection."""
        if self._opened:
            await self._pool.close()
            self._opened = False

    @contextlib.asynccontextmanager
    async def transaction(self, timeout: float | None = None) -> AsyncIterator[Connection]:
        """A connection inside a transaction, committed when the block ends; errors in the
        store's terms (see the module text). `timeout` replaces `self.timeout`."""
        timeout = self.timeout if timeout is None else timeout
        await self.open()
        loop = asyncio.get_running_loop()
        with self.translated():
            async with self._pool.connection(timeout=timeout) as conn:
                cutter = loop.call_later(timeout, cut, conn)
                try:
                    async with conn.transaction():
                        yield conn
                finally:
                    cutter.cancel()

    @contextlib.asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Connection]:
        """A connection for one statement (autocommit: it is its own transaction), with
        the same deadline and errors as `transaction`."""
        timeout = self.timeout if timeout is None else timeout
        await self.open()
        loop = asyncio.get_running_loop()
        with self.translated():
            async with self._pool.connection(timeout=timeout) as conn:
                cutter = loop.call_later(timeout, cut, conn)
                try:
                    yield conn
                finally:
                    cutter.cancel()

    async def connect(self) -> Connection:
        """A connection of its own, outside the pool (for LISTEN)."""
        timeout = self.timeout
        with self.translated():
            return await asyncio.wait_for(
                AsyncConnection.connect(self._conninfo, autocommit=True), timeout
            )

    @contextlib.contextmanager
    def translated(self) -> Any:
        """psycopg's errors as the store's: a lost or refused connection, a timeout, a
        serialization failure or a server shutting down pass (`StoreUnavailable`);
        anything else is a `StoreError`. Messages never carry the password."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed) as e:
            raise StoreUnavailable(self._message(e)) from None
        except psycopg.Error as error:
            raise StoreError(self._message(error)) from None

    def _message(self, error: Exception) -> str:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"{self.description}: {_scrub(text, self._password)}"


def cut(conn: Connection) -> None:
    """Shut the connection's socket down under whatever waits on it (the deadline)."""
    with contextlib.suppress(OSError, psycopg.Error, ValueError):
        fd = conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
