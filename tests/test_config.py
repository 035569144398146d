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
    # Each with its file and line: [daemon] keys and [[job]] headers are found in the text.
    assert sorted(reasons) == sorted(
        [
            f'{toml}:3: listen address "nowhere": expected HOST:PORT with a port 0-65535',
            f"{toml}:4: [daemon]: unknown key(s): colour",
            f"{toml}:5: shutdown_grace: invalid duration 'soon': use seconds or units like "
            "1.5s, 90s, 2m, 1h30m",
            f'{toml}:7: job "a": schedule: hour field "24": 24 is out of range 0-23',
            f"{toml}:12: job #2: name: required",
            f'{crontab}:3: minute field "61": 61 is out of range 0-59',
            f'{crontab}:2: job name "dup" is also defined in {toml}',
        ]
    )


def test_every_problem_of_one_job_is_listed(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "job.toml",
        '[[job]]\nname = "a"\nschedule = "* * *"\nconcurrency = "sometimes"\n'
        'timezone = "Mars/Base"\ncolour = 1\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(toml)
    assert [str(p) for p in caught.value.problems] == [
        f'{toml}:1: job "a": unknown field(s): colour',
        f'{toml}:1: job "a": schedule: expected 5, 6 or 7 fields (or a macro like @daily), '
        'got 3: "* * *"',
        f'{toml}:1: job "a": command: required',
        f'{toml}:1: job "a": timezone: unknown time zone "Mars/Base"',
        f'{toml}:1: job "a": concurrency: "sometimes" is not one of allow, forbid, replace',
    ]


def test_a_bad_command_line_value_is_named_as_such(tmp_path: Path) -> None:
    toml = write(tmp_path / "d.toml", '[daemon]\nlisten = "127.0.0.1:8467"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(toml, overrides={"listen": "127.0.0.1:99999"})
    assert [str(p) for p in caught.value.problems] == [
        '--listen: listen address "127.0.0.1:99999": expected HOST:PORT with a port 0-65535'
    ]


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


def test_http_connection_limits(tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", '[daemon]\nheader_timeout = "1.5s"\nmax_connections = 50\n')
    settings = load_config(toml).settings
    assert (settings.header_timeout, settings.max_connections) == (1.5, 50)
    defaults = load_config().settings
    assert (defaults.header_timeout, defaults.max_connections) == (30, 1000)


def test_bad_http_connection_limits_are_named(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "c.toml",
        '[daemon]\nheader_timeout = 0\nmax_connections = "many"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(toml)
    assert [str(p) for p in caught.value.problems] == [
        f"{toml}:2: header_timeout: must be more than 0 seconds",
        f"{toml}:3: max_connections: expected a whole number from 1 to 1000000000",
    ]
    with pytest.raises(ConfigError, match="header_timeout: invalid duration 'soon'"):
        load_config(write(tmp_path / "d.toml", '[daemon]\nheader_timeout = "soon"\n'))


def test_the_viewer_token(tmp_path: Path) -> None:
    toml = write(tmp_path / "v.toml", '[daemon]\nviewer_token = "look-but-do-not-touch"\n')
    assert load_config(toml).settings.viewer_token == "look-but-do-not-touch"
    assert load_config(None).settings.viewer_token is None
    for bad in ("1234", '""', "false"):
        toml = write(tmp_path / "bad.toml", f"[daemon]\nviewer_token = {bad}\n")
        with pytest.raises(ConfigError, match=r"bad.toml:2: viewer_token: expected a non-empty"):
            load_config(toml)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("retention_days = nan", "retention_days: expected a number of days > 0, at most 36500"),
        ("retention_days = inf", "retention_days: expected a number of days > 0, at most 36500"),
        ("retention_days = 1e300", "retention_days: expected a number of days > 0, at most 36500"),
        (
            "retention_runs = 99999999999999999999",
            "retention_runs: expected a whole number from 1 to 1000000000",
        ),
        (
            "shutdown_grace = 1e308",
            "shutdown_grace: invalid duration 1e+308: at most 31536000s (a year)",
        ),
        (
            "upgrade_timeout = inf",
            "upgrade_timeout: invalid duration inf: at most 31536000s (a year)",
        ),
        ("upgrade_timeout = [1]", "upgrade_timeout: expected a duration like 90, 1.5s, 2m, 1h30m"),
        (
            "header_timeout = 1e308",
            "header_timeout: invalid duration 1e+308: at most 31536000s (a year)",
        ),
        (
            "store_retry_interval = nan",
            "store_retry_interval: invalid duration nan: must be a finite number >= 0",
        ),
        ("token = 5", "token: expected a non-empty string"),
        (
            "max_connections = 10000000000",
            "max_connections: expected a whole number from 1 to 1000000000",
        ),
        ('state_dir = "/tmp/\\u0000x"', "state_dir: must not contain a NUL character"),
        ('listen = "a\\u0000b:80"', "listen address: must not contain a NUL character"),
    ],
)
def test_absurd_daemon_settings(tmp_path: Path, line: str, reason: str) -> None:
    toml = write(tmp_path / "e.toml", f"[daemon]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(toml)
    assert [str(p) for p in caught.value.problems] == [f"{toml}:2: {reason}"]


def test_absurd_job_values_in_a_config_file(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "j.toml",
        '[[job]]\nname = "a"\nschedule = "@daily"\ncommand = "x"\ntimeout = inf\n'
        'max_output = "2GiB"\nkill_grace = 1e300\nenabled = 1\numask = 18.0\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(toml)
    assert [str(p) for p in caught.value.problems] == [
        f'{toml}:1: job "a": timeout: invalid duration inf: at most 31536000s (a year)',
        f'{toml}:1: job "a": umask: "18.0" is not an octal number like "022"',
        f'{toml}:1: job "a": kill_grace: invalid duration 1e+300: at most 31536000s (a year)',
        f"{toml}:1: job \"a\": max_output: invalid size '2GiB': at most 1073741824 bytes (1GiB)",
        f'{toml}:1: job "a": enabled: expected true or false',
    ]


def test_log_format_and_public_url(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "c.toml",
        '[daemon]\nlog_format = "json"\npublic_url = "https://cron.example.com/"\n',
    )
    settings = load_config(toml).settings
    assert settings.log_format == "json"
    assert settings.public_url == "https://cron.example.com"  # links append /runs/ID
    assert load_config(toml, overrides={"log_format": "text"}).settings.log_format == "text"
    bad = write(tmp_path / "bad.toml", '[daemon]\npublic_url = "ftp://x"\nlog_format = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert [str(p) for p in caught.value.problems] == [
        f'{bad}:3: log_format: "1" is not one of text, json',
        f"{bad}:2: public_url: expected an http:// or https:// address",
    ]
