"""Notification channels as `[[notify]]` tables of evercron.toml, and `[smtp]` for mail.

```toml
[[notify]]
name = "ops"                           # letters, digits, . _ - (as job names)
url = "https://hooks.slack.com/services/T0/B0/XYZ"   # or https://..., http://..., mailto:a@b
on = ["failed", "recovered", "lost", "missed"]       # the default; also succeeded, started, overdue
jobs = ["backup-*", "report"]          # globs of job names; default: every job
secret = "..."                         # webhooks: X-Evercron-Signature: sha256=<HMAC of the body>
max_per_hour = 30                      # then one summary message, silence until the hour ends
every_run = false                      # true: every run's events, not only state changes
format = "slack"                       # http(s): "json" or "slack"; slack for hooks.slack.com
retry_backoff = "2s"                   # first retry; each next one waits twice as long ...
retry_max_interval = "1h"              # ... up to this ...
give_up_after = "1d"                   # ... and none after this

[smtp]                                 # needed by mailto: channels
host = "smtp.example.com"
port = 587
username = "evercron"
password = "..."
from = "evercron@example.com"
starttls = true                        # default: true on port 587
```

`read_channels` checks every key and reports each problem as (table line, reason).
Every key is documented in docs/CONFIGURATION.md (a test holds the two to each other).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from evercron.model import JOB_NAME, NotifyEvent
from evercron.units import parse_duration

DEFAULT_EVENTS = frozenset(
    {NotifyEvent.FAILED, NotifyEvent.RECOVERED, NotifyEvent.LOST, NotifyEvent.MISSED}
)
DEFAULT_MAX_PER_HOUR = 30
DEFAULT_RETRY_BACKOFF = 2.0
DEFAULT_RETRY_MAX_INTERVAL = 3600.0
DEFAULT_GIVE_UP_AFTER = 86400.0
CHANNEL_KEYS = frozenset(
    {
        "name", "url", "on", "jobs", "secret", "max_per_hour", "every_run", "format",
        "retry_backoff", "retry_max_interval", "give_up_after",
    }
)  # fmt: skip
SMTP_KEYS = frozenset({"host", "port", "username", "password", "from", "starttls"})
_GLOB = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]+")
_ADDRESS = re.compile(r"[^@\s<>,;\x00-\x1f]+@[^@\s<>,;\x00-\x1f]+")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]+")

Format = Literal["json", "slack"]


@dataclass(frozen=True)
class Smtp:
    """How mail leaves: one SMTP server (`starttls` upgrades the connection first)."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    sender: str = "evercron@localhost"
    starttls: bool = False


@dataclass(frozen=True)
class Channel:
    """Where notifications go, which ones, and how often at most."""

    name: str
    url: str
    events: frozenset[NotifyEvent] = DEFAULT_EVENTS
    jobs: tuple[str, ...] = ()
    secret: str | None = None
    max_per_hour: int = DEFAULT_MAX_PER_HOUR
    every_run: bool = False
    format: Format = "json"
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    retry_max_interval: float = DEFAULT_RETRY_MAX_INTERVAL
    give_up_after: float = DEFAULT_GIVE_UP_AFTER

    @property
    def is_mail(self) -> bool:
        """Whether it sends mail (a `mailto:` URL) rather than an HTTP request."""
        return self.url.startswith("mailto:")

    @property
    def address(self) -> str:
        """The mail address of a `mailto:` channel."""
        return self.url.removeprefix("mailto:")

    def covers(self, job: str) -> bool:
        """Whether events of `job` are for this channel (its `jobs` globs; all by default)."""
        return not self.jobs or any(fnmatch.fnmatchcase(job, glob) for glob in self.jobs)

    def wants(self, event: NotifyEvent, job: str, repeat: bool) -> bool:
        """Whether this channel sends `event` of `job`; a `repeat` (the same outcome as the
        job's previous run) only with `every_run`."""
        return event in self.events and (self.every_run or not repeat) and self.covers(job)

    def retry_delay(self, attempts: int) -> float:
        """How long to wait after the `attempts`-th failed attempt: `retry_backoff`,
        doubling each time, at most `retry_max_interval`."""
        delay: float = self.retry_backoff * 2.0 ** max(0, attempts - 1)
        return min(self.retry_max_interval, delay)


def read_channels(
    tables: Sequence[Any], smtp_table: Any, lines: Sequence[int | None], smtp_line: int | None
) -> tuple[list[Channel], Smtp | None, list[tuple[int | None, str]]]:
    """The channels of `[[notify]]` tables (at `lines`) and the `[smtp]` table (or None):
    every problem as (line, reason), and then no channel is used."""
    problems: list[tuple[int | None, str]] = []
    smtp = None
    if smtp_table is not None:
        smtp, smtp_problems = _read_smtp(smtp_table)
        problems.extend((smtp_line, reason) for reason in smtp_problems)
    channels: list[Channel] = []
    names: set[str] = set()
    for index, table in enumerate(tables):
        line = lines[index] if index < len(lines) else None
        if not isinstance(table, Mapping):
            problems.append((line, "[[notify]] must be a table"))
            continue
        label = f'notify "{table["name"]}"' if isinstance(table.get("name"), str) else "notify"
        channel, reasons = _read_channel(table)
        problems.extend((line, f"{label}: {reason}") for reason in reasons)
        if channel is None:
            continue
        if channel.name in names:
            problems.append((line, f'{label}: another [[notify]] has the name "{channel.name}"'))
        if channel.is_mail and smtp_table is None:
            problems.append((line, f"{label}: mailto: needs an [smtp] table (host, from)"))
        names.add(channel.name)
        channels.append(channel)
    return (channels, smtp, problems) if not problems else ([], None, problems)


def _read_channel(table: Mapping[str, Any]) -> tuple[Channel | None, list[str]]:
    problems: list[str] = []
    unknown = sorted(set(table) - CHANNEL_KEYS)
    if unknown:
        problems.append(f"unknown key(s): {', '.join(unknown)}")
    name = table.get("name")
    if not isinstance(name, str) or not JOB_NAME.fullmatch(name):
        problems.append('name: required, letters, digits, ".", "_" and "-" (as job names)')
    url = table.get("url")
    if not isinstance(url, str):
        problems.append("url: required (https://..., http://... or mailto:ADDRESS)")
        url = ""
    else:
        problems.extend(_url_problems(url))
    events = _events(table.get("on"), problems)
    jobs = _globs(table.get("jobs"), problems)
    secret = table.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret or "\0" in secret):
        problems.append("secret: expected a non-empty string without NUL characters")
    max_per_hour = table.get("max_per_hour", DEFAULT_MAX_PER_HOUR)
    if not isinstance(max_per_hour, int) or isinstance(max_per_hour, bool) or max_per_hour < 1:
        problems.append("max_per_hour: expected a whole number >= 1")
    every_run = table.get("every_run", False)
    if not isinstance(every_run, bool):
        problems.append("every_run: expected true or false")
    chosen = _format(table.get("format"), url, problems)
    durations = {
        key: _duration(table, key, default, problems)
        for key, default in (
            ("retry_backoff", DEFAULT_RETRY_BACKOFF),
            ("retry_max_interval", DEFAULT_RETRY_MAX_INTERVAL),
            ("give_up_after", DEFAULT_GIVE_UP_AFTER),
        )
    }
    if problems:
        return None, problems
    assert isinstance(name, str) and chosen is not None
    return (
        Channel(
            name=name,
            url=url,
            events=events,
            jobs=jobs,
            secret=secret,
            max_per_hour=max_per_hour,
            every_run=every_run,
            format=chosen,
            **durations,
        ),
        [],
    )


def _url_problems(url: str) -> list[str]:
    if any(ord(char) < 32 or char == "\x7f" for char in url):
        return ["url: must not contain control characters"]
    if url.startswith("mailto:"):
        address = url.removeprefix("mailto:")
        return [] if _ADDRESS.fullmatch(address) else [f'url: "{address}" is not a mail address']
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        scheme = f'"{parts.scheme}:"' if parts.scheme else "none"
        return [f"url: unknown scheme {scheme} (use https://, http:// or mailto:)"]
    if not parts.hostname:
        return [f'url: "{url}" names no host']
    return []


def _events(value: Any, problems: list[str]) -> frozenset[NotifyEvent]:
    if value is None:
        return DEFAULT_EVENTS
    known = ", ".join(event.value for event in NotifyEvent)
    if not isinstance(value, list) or not value:
        problems.append(f"on: expected a list of events ({known})")
        return DEFAULT_EVENTS
    events = set()
    for item in value:
        try:
            events.add(NotifyEvent(item))
        except ValueError:
            problems.append(f'on: unknown event "{item}" (known: {known})')
    return frozenset(events)


def _globs(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(glob, str) for glob in value):
        problems.append('jobs: expected a list of job name globs like ["backup-*"]')
        return ()
    for glob in value:
        if not _GLOB.fullmatch(glob) or not _brackets_balanced(glob):
            problems.append(
                f'jobs: "{glob}" is not a glob of job names (letters, digits, . _ - and * ? [...])'
            )
    return tuple(value)


def _brackets_balanced(glob: str) -> bool:
    depth = 0
    for char in glob:
        if char == "[":
            if depth:
                return False
            depth = 1
        elif char == "]":
            if not depth:
                return False
            depth = 0
    return depth == 0


def _format(value: Any, url: str, problems: list[str]) -> Format | None:
    if value is None:
        return "slack" if urlsplit(url).hostname == "hooks.slack.com" else "json"
    if url.startswith("mailto:"):
        problems.append("format: only for http(s) URLs (mail has its own)")
        return None
    if value not in ("json", "slack"):
        problems.append(f'format: "{value}" is not one of json, slack')
        return None
    return "json" if value == "json" else "slack"


def _duration(table: Mapping[str, Any], key: str, default: float, problems: list[str]) -> float:
    value = table.get(key)
    if value is None:
        return default
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError) as error:
        problems.append(f"{key}: {error}")
        return default
    if seconds <= 0:
        problems.append(f"{key}: must be more than 0")
    return seconds


def _read_smtp(table: Any) -> tuple[Smtp | None, list[str]]:
    if not isinstance(table, Mapping):
        return None, ["[smtp] must be a table"]
    problems = []
    unknown = sorted(set(table) - SMTP_KEYS)
    if unknown:
        problems.append(f"[smtp]: unknown key(s): {', '.join(unknown)}")
    host = table.get("host")
    if not isinstance(host, str) or not host or not _HOST.fullmatch(host):
        problems.append("[smtp]: host: required, a host name or address")
    port = table.get("port", 25)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        problems.append("[smtp]: port: expected a port 1-65535")
    for key in ("username", "password"):
        if key in table and (not isinstance(table[key], str) or "\0" in table[key]):
            problems.append(f"[smtp]: {key}: expected a string without NUL characters")
    if ("username" in table) != ("password" in table):
        problems.append("[smtp]: username and password go together")
    sender = table.get("from")
    if (
        not isinstance(sender, str)
        or any(ord(char) < 32 for char in sender)
        or not _ADDRESS.fullmatch(sender.rsplit("<", 1)[-1].rstrip(">"))
    ):
        problems.append('[smtp]: from: required, a mail address like "evercron@example.com"')
    starttls = table.get("starttls", port == 587)
    if not isinstance(starttls, bool):
        problems.append("[smtp]: starttls: expected true or false")
    if problems:
        return None, problems
    assert isinstance(host, str) and isinstance(sender, str)
    return (
        Smtp(host, port, table.get("username"), table.get("password"), sender, starttls),
        [],
    )
