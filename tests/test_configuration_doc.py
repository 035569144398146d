"""docs/CONFIGURATION.md against the code: it documents every key, only real keys, and
its defaults and examples read as the code reads them - so it cannot drift."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from evercron.model import Job
from evercron.notify.channels import CHANNEL_KEYS, SMTP_KEYS, read_channels
from evercron.settings import DAEMON_KEYS, Settings, read_settings

DOC = Path(__file__).parent.parent / "docs" / "CONFIGURATION.md"
MINIMAL = {"name": "x", "schedule": "@daily", "command": "true"}


def table(heading: str) -> dict[str, list[str]]:
    """The rows of the table under `heading`, by key (cells without backticks)."""
    lines = DOC.read_text().splitlines()
    start = lines.index(heading)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = [
            cell.strip("`") if cell.count("`") == 2 else cell for cell in cells[1:]
        ]
    return rows


def toml_value(text: str) -> Any:
    return tomllib.loads(f"value = {text}")["value"]


def daemon_table(name: str, text: str) -> dict[str, Any]:
    """A [daemon] table setting `name` to the TOML value `text` (with its partner key,
    for the two that go together)."""
    pair = {"tls_cert": "cert.pem", "tls_key": "key.pem"} if name.startswith("tls_") else {}
    return {**pair, name: toml_value(text)}


DAEMON = table("## `[daemon]`")
JOB = table("## `[[job]]`")


def test_every_daemon_key_is_documented_and_no_other() -> None:
    assert sorted(DAEMON) == sorted(key.name for key in DAEMON_KEYS)


@pytest.mark.parametrize("key", DAEMON_KEYS, ids=lambda key: key.name)
def test_daemon_key_type_default_and_example(key: Any) -> None:
    kind, default, example, meaning = DAEMON[key.name]
    assert kind == key.kind.value and meaning
    problems: list[str] = []
    example_read = read_settings(daemon_table(key.name, example), lambda r, _: problems.append(r))
    assert problems == [] and example_read is not None
    defaults = Settings(state_dir=Path("/"))
    if default == "-":
        assert key.default is None
        return
    documented = read_settings(daemon_table(key.name, default), lambda r, _: problems.append(r))
    assert problems == [] and documented is not None
    if key.name == "listen":
        assert (documented.host, documented.port) == (defaults.host, defaults.port)
    else:
        assert getattr(documented, key.name) == getattr(defaults, key.name) == key.default


def test_every_job_field_is_documented_and_no_other() -> None:
    fields = set(Job.__dataclass_fields__) - {"source"}
    assert sorted(JOB) == sorted(fields)


@pytest.mark.parametrize("key", sorted(JOB))
def test_job_field_default_and_example(key: str) -> None:
    _, default, example, meaning = JOB[key]
    assert meaning
    base = Job.from_mapping(MINIMAL)
    with_example = Job.from_mapping({**MINIMAL, key: toml_value(example)})
    assert getattr(with_example, key) != getattr(base, key) or key in MINIMAL
    if default == "(required)":
        assert key in MINIMAL
    elif default == "-":
        assert getattr(base, key) in (None, "", {})
    else:
        documented = Job.from_mapping({**MINIMAL, key: toml_value(default)})
        assert getattr(documented, key) == getattr(base, key)


NOTIFY = table("## `[[notify]]`")
SMTP = table("## `[smtp]`")
A_CHANNEL = {"name": "ops", "url": "https://example.com/hook"}
A_SERVER = {"host": "smtp.example.com", "from": "cron@example.com"}
PARTNERS = {"username": {"password": "p"}, "password": {"username": "u"}}


def read_one(channel: dict[str, Any], smtp: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The channel and SMTP server these tables make (asserting they are valid)."""
    channels, server, problems = read_channels([channel], smtp, [1], 1)
    assert problems == []
    return channels[0], server


def test_every_notify_and_smtp_key_is_documented_and_no_other() -> None:
    assert sorted(NOTIFY) == sorted(CHANNEL_KEYS)
    assert sorted(SMTP) == sorted(SMTP_KEYS)


@pytest.mark.parametrize("key", sorted(NOTIFY))
def test_notify_key_default_and_example(key: str) -> None:
    _, default, example, meaning = NOTIFY[key]
    assert meaning
    base, _ = read_one(A_CHANNEL)
    with_example, _ = read_one({**A_CHANNEL, key: toml_value(example)})
    assert with_example != base or key in A_CHANNEL
    if default == "(required)":
        assert key in A_CHANNEL
    elif default != "-":
        assert read_one({**A_CHANNEL, key: toml_value(default)})[0] == base


@pytest.mark.parametrize("key", sorted(SMTP))
def test_smtp_key_default_and_example(key: str) -> None:
    _, default, example, meaning = SMTP[key]
    assert meaning
    _, base = read_one(A_CHANNEL, A_SERVER)
    _, with_example = read_one(
        A_CHANNEL, {**A_SERVER, **PARTNERS.get(key, {}), key: toml_value(example)}
    )
    assert with_example != base or key in A_SERVER
    if default == "(required)":
        assert key in A_SERVER
    elif default != "-":
        assert read_one(A_CHANNEL, {**A_SERVER, key: toml_value(default)})[1] == base
