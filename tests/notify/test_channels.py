"""[[notify]] and [smtp] in evercron.toml: defaults, selection, and every mistake refused
with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from evercron.config import ConfigError, load_config
from evercron.model import NotifyEvent
from evercron.notify.channels import DEFAULT_EVENTS, Channel


def _load(tmp_path: Path, text: str) -> tuple[str, list[Channel]]:
    path = tmp_path / "evercron.toml"
    path.write_text(text)
    return str(path), load_config(str(path)).channels


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "evercron.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    return [str(problem) for problem in caught.value.problems]


def test_defaults_and_the_format_chosen_by_the_url(tmp_path: Path) -> None:
    _, channels = _load(
        tmp_path,
        """
[[notify]]
name = "hook"
url = "https://example.com/hook"

[[notify]]
name = "chat"
url = "https://hooks.slack.com/services/T0/B0/X"

[[notify]]
name = "mattermost"
url = "http://127.0.0.1:8065/hooks/abc"
format = "slack"
on = ["succeeded", "started", "overdue"]
jobs = ["backup-*", "report"]
secret = "s3cret"
max_per_hour = 5
every_run = true
retry_backoff = "100ms"
retry_max_interval = "1s"
give_up_after = "10s"

[[notify]]
name = "mail"
url = "mailto:ops@example.com"

[smtp]
host = "127.0.0.1"
port = 587
from = "Evercron <cron@example.com>"
""",
    )
    hook, chat, mattermost, mail = channels
    assert (hook.format, chat.format, mattermost.format) == ("json", "slack", "slack")
    assert hook.events == DEFAULT_EVENTS == {"failed", "recovered", "lost", "missed"}
    assert (hook.max_per_hour, hook.every_run, hook.jobs, hook.secret) == (30, False, (), None)
    assert hook.give_up_after == 86400 and hook.retry_delay(1) == 2.0
    assert mattermost.events == {"succeeded", "started", "overdue"}
    assert mattermost.retry_delay(1) == 0.1 and mattermost.retry_delay(3) == 0.4
    assert mattermost.retry_delay(10) == 1.0  # at most retry_max_interval
    assert mail.is_mail and mail.address == "ops@example.com"
    config = load_config(str(tmp_path / "evercron.toml"))
    assert config.smtp is not None and config.smtp.starttls  # port 587: STARTTLS by default
    assert config.smtp.sender == "Evercron <cron@example.com>"


def test_which_events_of_which_jobs_a_channel_wants() -> None:
    channel = Channel("c", "https://x", jobs=("backup-*", "report"))
    assert channel.wants(NotifyEvent.FAILED, "backup-db", repeat=False)
    assert channel.wants(NotifyEvent.FAILED, "report", repeat=False)
    assert not channel.wants(NotifyEvent.FAILED, "reports", repeat=False)
    assert not channel.wants(NotifyEvent.FAILED, "backup-db", repeat=True)  # state change only
    assert not channel.wants(NotifyEvent.SUCCEEDED, "report", repeat=False)  # not in `on`
    noisy = Channel("n", "https://x", every_run=True)
    assert noisy.wants(NotifyEvent.FAILED, "anything", repeat=True)


def test_every_mistake_is_refused_with_its_line(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
[[notify]]
name = "a"
url = "ftp://example.com/x"

[[notify]]
name = "b"
url = "mailto:ops@example.com"
on = ["failed", "exploded"]
jobs = ["back up", "x[y"]
colour = "red"

[[notify]]
name = "a"
url = "https://example.com"
format = "xml"
max_per_hour = 0
retry_backoff = "soon"

[[notify]]
url = "https://example.com"
""",
    )
    path = tmp_path / "evercron.toml"
    assert problems == [
        f'{path}:2: notify "a": url: unknown scheme "ftp:" (use https://, http:// or mailto:)',
        f'{path}:6: notify "b": unknown key(s): colour',
        f'{path}:6: notify "b": on: unknown event "exploded" (known: failed, recovered, '
        "succeeded, started, lost, missed, overdue)",
        f'{path}:6: notify "b": jobs: "back up" is not a glob of job names (letters, digits, '
        ". _ - and * ? [...])",
        f'{path}:6: notify "b": jobs: "x[y" is not a glob of job names (letters, digits, '
        ". _ - and * ? [...])",
        f'{path}:13: notify "a": max_per_hour: expected a whole number >= 1',
        f'{path}:13: notify "a": format: "xml" is not one of json, slack',
        f"{path}:13: notify \"a\": retry_backoff: invalid duration 'soon': use seconds or "
        "units like 1.5s, 90s, 2m, 1h30m",
        f'{path}:20: notify: name: required, letters, digits, ".", "_" and "-" (as job names)',
    ]


def test_mail_needs_smtp_and_names_are_unique(tmp_path: Path) -> None:
    path = tmp_path / "evercron.toml"
    problems = _problems(
        tmp_path,
        '[[notify]]\nname = "m"\nurl = "mailto:ops@example.com"\n\n'
        '[[notify]]\nname = "m"\nurl = "https://example.com"\n',
    )
    assert problems == [
        f'{path}:1: notify "m": mailto: needs an [smtp] table (host, from)',
        f'{path}:5: notify "m": another [[notify]] has the name "m"',
    ]
    problems = _problems(tmp_path, '[smtp]\nport = 99999\nusername = "u"\nspeed = 1\n')
    assert problems == [
        f"{path}:1: [smtp]: unknown key(s): speed",
        f"{path}:1: [smtp]: host: required, a host name or address",
        f"{path}:1: [smtp]: port: expected a port 1-65535",
        f"{path}:1: [smtp]: username and password go together",
        f'{path}:1: [smtp]: from: required, a mail address like "evercron@example.com"',
    ]
    assert _problems(tmp_path, "[notify]\nname = 1\n") == [
        f"{path}: notification channels are [[notify]] tables"
    ]


def test_control_characters_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evercron.toml"
    problems = _problems(
        tmp_path,
        '[[notify]]\nname = "m"\nurl = "mailto:ops@example.com"\nsecret = "a\\u0000b"\n\n'
        '[[notify]]\nname = "h"\nurl = "https://example.com/\\nx"\n\n'
        '[smtp]\nhost = "mail\\nhost"\nfrom = "Cron\\r\\nBcc: x <cron@example.com>"\n',
    )
    assert problems == [
        f"{path}:10: [smtp]: host: required, a host name or address",
        f'{path}:10: [smtp]: from: required, a mail address like "evercron@example.com"',
        f'{path}:1: notify "m": secret: expected a non-empty string without NUL characters',
        f'{path}:6: notify "h": url: must not contain control characters',
    ]
