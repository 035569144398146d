"""The daemon's settings: the `[daemon]` table of evercron.toml, key by key.

Every key is one `Key` in `DAEMON_KEYS` - its kind (how it is read and checked), its
default, what it means and an example. `read_settings` reads a table with it and
`docs/CONFIGURATION.md` documents it; a test holds the two to each other.
"""

from __future__ import annotations

import enum
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from evercron.units import parse_duration

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8467
MAX_COUNT = 1_000_000_000
MAX_DAYS = 36_500  # a century
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
MIN_NODE_LEASE = 3.0
"""A lease is renewed every third of it; a node that misses renewals needs a third of it
(at least a second) to end its commands before others may take it for dead."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}")
"""A node name or tag: letters, digits and "_.:=-", at most 64."""


class Kind(enum.Enum):
    """How a key's value is written and checked."""

    TEXT = "text"
    """A non-empty string."""
    PATH = "path"
    """A file or directory path."""
    ADDRESS = "address"
    """HOST:PORT (IPv6 as [::1]:PORT)."""
    DURATION = "duration"
    """Seconds, or a string like 1.5s, 90s, 2m, 1h30m; 0 or more, at most a year."""
    PERIOD = "period"
    """A duration of more than 0 seconds."""
    COUNT = "count"
    """A whole number, at least 1 (at most `MAX_COUNT`)."""
    DAYS = "days"
    """A number of days, more than 0 (at most `MAX_DAYS`)."""
    LOG_FORMAT = "log format"
    """`text` or `json`."""
    URL = "url"
    """An http:// or https:// address."""
    DATABASE = "database"
    """A PostgreSQL database URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE."""
    NAME = "name"
    """Letters, digits and "_.:=-", at most 64."""
    NAMES = "names"
    """A list of names."""
    LEASE = "lease"
    """A duration of at least 3 seconds."""


@dataclass(frozen=True)
class Key:
    """One `[daemon]` key."""

    name: str
    kind: Kind
    default: Any
    meaning: str
    example: str


DAEMON_KEYS: tuple[Key, ...] = (
    Key("state_dir", Kind.PATH, None, "Where the store, the token, the locks and the "
        "address file live (default /var/lib/evercron for root, else "
        "$XDG_STATE_HOME/evercron)", '"/var/lib/evercron"'),
    Key("listen", Kind.ADDRESS, f"{DEFAULT_HOST}:{DEFAULT_PORT}", "The API and web page "
        "address (systemd socket activation and hot upgrades bring their own)",
        '"127.0.0.1:8467"'),
    Key("token", Kind.TEXT, None, "The API token (else EVERCRON_TOKEN, else one generated "
        "into the state dir); at least 16 characters when listening beyond loopback",
        '"a-long-random-secret"'),
    Key("viewer_token", Kind.TEXT, None, "A read-only token (else EVERCRON_VIEWER_TOKEN): "
        "it reads everything but secrets, every change it asks for is refused (403)",
        '"another-long-secret"'),
    Key("tls_cert", Kind.PATH, None, "Serve HTTPS with this certificate (with tls_key)",
        '"/etc/evercron/cert.pem"'),
    Key("tls_key", Kind.PATH, None, "The certificate's private key (with tls_cert)",
        '"/etc/evercron/key.pem"'),
    Key("shutdown_grace", Kind.DURATION, 30.0, "How long running jobs may go on after a "
        "stop request before they are ended", '"30s"'),
    Key("upgrade_timeout", Kind.PERIOD, 60.0, "How long a hot upgrade waits for the new "
        "process to serve before it gives up (the old one keeps serving)", '"60s"'),
    Key("retention_runs", Kind.COUNT, 1000, "Finished runs kept per job (beyond it, those "
        "also older than retention_days go)", "1000"),
    Key("retention_days", Kind.DAYS, 30.0, "Days finished runs are kept at least", "30"),
    Key("store_retry_interval", Kind.PERIOD, 5.0, "The longest pause between tries of "
        "a write the store refused (disk full, locked)", '"5s"'),
    Key("header_timeout", Kind.PERIOD, 30.0, "Time an HTTP client has to send a whole "
        "request; a connection that has not is closed", '"30s"'),
    Key("max_connections", Kind.COUNT, 1000, "Open HTTP connections at most (lowered to "
        "what the descriptor limit leaves); past it the oldest idle are closed", "1000"),
    Key("log_format", Kind.LOG_FORMAT, "text", "text lines, or json: one object per line "
        "with time, level, logger, message and job, run, node where they apply "
        "(--log-format wins)", '"json"'),
    Key("public_url", Kind.URL, None, "Where people reach the web page: notifications "
        "link to a run's page under it", '"https://cron.example.com"'),
    Key("database_url", Kind.DATABASE, None, "A PostgreSQL database shared by several nodes "
        "(else EVERCRON_DATABASE_URL; without either, SQLite in the state dir)",
        '"postgresql://evercron@db.example:5432/evercron"'),
    Key("node_name", Kind.NAME, None, "This node's name (default: the host name)",
        '"worker-1"'),
    Key("node_tags", Kind.NAMES, (), "This node's tags: a job with run_on runs only on "
        "nodes that have all its tags", '["gpu", "eu"]'),
    Key("node_lease", Kind.LEASE, 30.0, "A node that renewed nothing for this long is taken "
        "for dead and its runs are lost; it renews every third of it", '"15s"'),
    Key("max_running", Kind.COUNT, None, "Commands this node runs at once (default: no "
        "limit); past it, firings go to other nodes", "100"),
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """How the daemon runs: one field per key of `DAEMON_KEYS` (`listen` as host and
    port), every one with its documented default."""

    state_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    viewer_token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    shutdown_grace: float = 30.0
    upgrade_timeout: float = 60.0
    retention_runs: int = 1000
    retention_days: float = 30.0
    store_retry_interval: float = 5.0
    header_timeout: float = 30.0
    max_connections: int = 1000
    log_format: LogFormat = "text"
    public_url: str | None = None
    database_url: str | None = None
    node_name: str = field(default_factory=socket.gethostname)
    node_tags: tuple[str, ...] = ()
    node_lease: float = 30.0
    max_running: int | None = None

    @property
    def listen(self) -> str:
        """host:port as given to --listen."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def default_state_dir() -> Path:
    """/var/lib/evercron for root, else $XDG_STATE_HOME/evercron (~/.local/state)."""
    if os.geteuid() == 0:
        return Path("/var/lib/evercron")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "evercron"


def parse_listen(text: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 as [::1]:PORT); raise ValueError with the reason."""
    host, separator, port_text = text.rpartition(":")
    if "\0" in text:
        raise ValueError("listen address: must not contain a NUL character")
    if not separator or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f'listen address "{text}": expected HOST:PORT with a port 0-65535')
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port_text)


Fail = Callable[[str, str], None]
"""Called with a problem's reason and the key it is about."""


def read_settings(data: Mapping[str, Any], fail: Fail) -> Settings | None:
    """Settings from a `[daemon]` table; each problem goes to `fail`, and then the
    result is None."""
    known = {key.name for key in DAEMON_KEYS}
    unknown = sorted(set(data) - known)
    failed = bool(unknown)
    if unknown:
        fail(f"[daemon]: unknown key(s): {', '.join(unknown)}", unknown[0])
    values: dict[str, Any] = {}
    for key in DAEMON_KEYS:
        if key.name not in data:
            continue
        try:
            values[key.name] = _READERS[key.kind](data[key.name])
        except (ValueError, TypeError) as error:
            named = key.kind is Kind.ADDRESS  # its message names the address already
            fail(str(error) if named else f"{key.name}: {error}", key.name)
            failed = True
    tls = (values.get("tls_cert"), values.get("tls_key"))
    if (tls[0] is None) != (tls[1] is None):
        fail("tls_cert and tls_key go together", "tls_cert" if tls[0] else "tls_key")
        failed = True
    if failed:
        return None
    host, port = values.pop("listen", (DEFAULT_HOST, DEFAULT_PORT))
    state_dir = Path(values.pop("state_dir", None) or default_state_dir())
    names = {field.name for field in fields(Settings)}
    return Settings(
        state_dir=state_dir,
        host=host,
        port=port,
        **{name: value for name, value in values.items() if name in names},
    )


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _duration(value: Any) -> float:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("expected a duration like 90, 1.5s, 2m, 1h30m")
    return parse_duration(value)


def _period(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
        raise ValueError(f"expected a whole number from 1 to {MAX_COUNT}")
    return value


def _days(value: Any) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= MAX_DAYS  # (NaN fails this too)
    ):
        raise ValueError(f"expected a number of days > 0, at most {MAX_DAYS}")
    return float(value)


def _address(value: Any) -> tuple[str, int]:
    return parse_listen(str(value))


def _log_format(value: Any) -> LogFormat:
    for known in LOG_FORMATS:
        if value == known:
            return known
    raise ValueError(f'"{value}" is not one of {", ".join(LOG_FORMATS)}')


def _url(value: Any) -> str:
    text = _text(value)
    if (
        not text.startswith(("http://", "https://"))
        or not text.split("://", 1)[1]
        or any(ord(char) <= 32 or char == "\x7f" for char in text)
    ):
        raise ValueError("expected an http:// or https:// address")
    return text.rstrip("/")  # links are made by appending "/runs/ID"


def _database(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
    return text


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError('use letters, digits and "_.:=-" (at most 64)')
    return value


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError('expected a list like ["gpu", "eu"]')
    return tuple(dict.fromkeys(_name(item) for item in value))


def _lease(value: Any) -> float:
    seconds = _duration(value)
    if seconds < MIN_NODE_LEASE:
        raise ValueError(
            f"{seconds:g}s is too short: it is renewed every third of it, and a node that "
            "misses renewals needs a third of it to end its commands before others take "
            f"it for dead (at least {MIN_NODE_LEASE:g}s)"
        )
    return seconds


_READERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.TEXT: _text,
    Kind.PATH: _text,
    Kind.ADDRESS: _address,
    Kind.DURATION: _duration,
    Kind.PERIOD: _period,
    Kind.COUNT: _count,
    Kind.DAYS: _days,
    Kind.LOG_FORMAT: _log_format,
    Kind.URL: _url,
    Kind.DATABASE: _database,
    Kind.NAME: _name,
    Kind.NAMES: _names,
    Kind.LEASE: _lease,
}
