"""Reading evercron.toml and crontabs: complete results or every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from evercron.config import ConfigError, load_config, parse_listen


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_config_and_crontab_together(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "evercron.toml",
        """
[daemon]
state_dir = "/tmp/somewhere"
listen = "127.0.0.1:9999"
shutdown_grace = "45s"

[[job]]
name = "backup"
schedule = "0 3 * * *"
command = "backup --all"
timeout = "1h"
""",
    )
    crontab = write(tmp_path / "site.crontab", "SHELL=/bin/bash\n# name: hourly\n@hourly echo hi\n")
    config = load_config(toml, [crontab])
    assert config.settings.port == 9999 and config.settings.shutdown_grace == 45
    assert str(config.settings.state_dir) == "/tmp/somewhere"
    backup, hourly = config.jobs
    assert backup.timeout == 3600 and backup.source == toml
    assert hourly.name == "hourly" and hourly.shell == "/bin/bash" and hourly.source == crontab


def test_overrides_win(tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", '[daemon]\nlisten = "127.0.0.1:1"\n')
    config = load_config(toml, overrides={"listen": "[::1]:0", "state_dir": str(tmp_path)})
    assert (config.settings.host, config.settings.port) == ("::1", 0)
    assert config.settings.state_dir == tmp_path
    assert config.settings.listen == "[::1]:0"


def test_every_problem_is_listed(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "bad.toml",
        """
[daemon]
listen = "nowhere"
colour = "blue"
shutdown_grace = "soon"

[[job]]
name = "a"
schedule = "0 24 * * *"
command = "x"

[[job]]
schedule = "@daily"
command = "y"

[[job]]
name = "dup"
schedule = "@daily"
command = "z"
""",
    )
    crontab = write(tmp_path / "c.crontab", "# name: dup\n@daily z\n61 * * * * w\n")
    with pytest.raises(ConfigError) as caught:
        load_config(toml, [crontab])
    reasons = [str(p) for p in caught.value.problems]
    assert any("expected HOST:PORT" in r for r in reasons)
    assert any("unknown key(s): colour" in r for r in reasons)
    assert any("shutdown_grace: invalid duration" in r for r in reasons)
    assert any('job "a": schedule: hour field "24"' in r for r in reasons)
    assert any("job #2: name: required" in r for r in reasons)
    assert f'{crontab}:3: minute field "61": 61 is out of range 0-59' in reasons
    assert any('job name "dup" is also defined' in r for r in reasons)
    assert len(reasons) == 7


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))
    broken = write(tmp_path / "broken.toml", "[daemon\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(broken)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8467", ("127.0.0.1", 8467)),
        ("[::1]:80", ("::1", 80)),
        (":0", ("127.0.0.1", 0)),
    ],
)
def test_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["localhost", "host:port", "h:70000"])
def test_bad_listen(text: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_listen(text)
