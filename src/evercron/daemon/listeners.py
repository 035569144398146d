"""Where the API listens: sockets bound here, adopted from systemd socket activation, or
inherited from the previous generation during a hot upgrade (never re-bound, so no
connection is refused while the processes change hands)."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket

log = logging.getLogger("evercron.daemon")
SD_LISTEN_FDS_START = 3  # systemd passes sockets from this descriptor on


class ListenError(RuntimeError):
    """No usable listening socket; the message says why."""


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A new listening TCP socket (IPv6 when the host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        created = socket.create_server((host, port), family=family, backlog=1024)
    except OSError as error:
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    # create_server leaves the socket's protocol at 0, and asyncio turns Nagle's algorithm
    # off on accepted connections only when it reads IPPROTO_TCP: without that, the body
    # of every response waited for the client's delayed ACK of its headers (40 ms). Made
    # again from the descriptor, the socket reads its real protocol from the kernel.
    return socket.socket(fileno=created.detach())


def adopt(fd: int, origin: str) -> socket.socket:
    """The listening stream socket at descriptor `fd` (close-on-exec from now on)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as error:
        raise ListenError(f"{origin}: descriptor {fd} is not a socket: {error}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise ListenError(f"{origin}: descriptor {fd} is not a listening stream socket")
    sock.set_inheritable(False)
    return sock


def from_systemd() -> dict[str, socket.socket]:
    """The sockets systemd passed to this process (`LISTEN_FDS`, `LISTEN_PID`,
    `LISTEN_FDNAMES`), by name; empty when not socket-activated. The variables are
    removed so that jobs and successors never see them."""
    count = os.environ.pop("LISTEN_FDS", None)
    pid = os.environ.pop("LISTEN_PID", None)
    names = os.environ.pop("LISTEN_FDNAMES", "").split(":")
    if count is None or pid != str(os.getpid()):
        return {}
    try:
        number = int(count)
    except ValueError:
        raise ListenError(f'socket activation: LISTEN_FDS="{count}" is not a number') from None
    sockets: dict[str, socket.socket] = {}
    for index in range(number):
        fd = SD_LISTEN_FDS_START + index
        name = names[index] if index < len(names) and names[index] else f"fd{fd}"
        if name in sockets:
            name = f"{name}.{fd}"
        sockets[name] = adopt(fd, "socket activation")
    return sockets


def open_listeners(inherited: dict[str, int], host: str, port: int) -> dict[str, socket.socket]:
    """The API's listening sockets by name: those of the previous generation (its
    descriptors named `listen:NAME` in `inherited`), else systemd's, else one bound to
    `host`:`port`; raises `ListenError` when none can be had."""
    found = {
        name.removeprefix("listen:"): adopt(fd, "upgrade")
        for name, fd in inherited.items()
        if name.startswith("listen:")
    }
    if found:
        return found
    activated = from_systemd()
    if activated:
        log.info("socket activation: listening on %s", ", ".join(activated))
        return activated
    return {"api": bind(host, port)}


def address_of(sock: socket.socket) -> tuple[str, int]:
    """The host and port a TCP listening socket is bound to."""
    host, port = sock.getsockname()[:2]
    return str(host), int(port)


def shown_address(sock: socket.socket) -> str:
    """HOST:PORT (IPv6 as [HOST]:PORT) a TCP listening socket is bound to, as the logs
    show it: the real port when port 0 was asked for, 0.0.0.0 when all addresses."""
    host, port = address_of(sock)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_of(sock: socket.socket, tls: bool) -> str:
    """The base URL clients use to reach `sock`."""
    host, port = address_of(sock)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"
