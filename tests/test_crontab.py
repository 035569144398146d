"""Reading crontab files (supercronic-compatible)."""

from __future__ import annotations

import hashlib

from evercron.crontab import parse_crontab


def test_names_env_timezones_and_field_counts() -> None:
    parsed = parse_crontab(
        "\n".join(
            [
                "# a comment",
                "SHELL=/bin/bash",
                'GREETING="hello world"',
                "# name: first",
                "*/5 * * * * echo $GREETING",
                "CRON_TZ=Europe/Berlin",
                "*/10 * * * * * * echo seconds",
                "0 0 1 1 * 2030 echo year",
                "@every 90s echo every",
                "@daily  echo  daily  ",
            ]
        ),
        "/etc/cron/site.crontab",
    )
    assert parsed.problems == []
    first, seconds, year, every, daily = parsed.entries
    assert (first.name, str(first.schedule), first.command) == (
        "first",
        "*/5 * * * *",
        "echo $GREETING",
    )
    assert first.env == {"SHELL": "/bin/bash", "GREETING": "hello world"}
    assert first.timezone is None and seconds.timezone == "Europe/Berlin"
    assert str(seconds.schedule) == "*/10 * * * * * *" and seconds.command == "echo seconds"
    assert str(year.schedule) == "0 0 1 1 * 2030" and year.command == "echo year"
    assert str(every.schedule) == "@every 90s" and every.command == "echo every"
    assert daily.command == "echo  daily"
    expected = hashlib.sha1(b"@every 90secho every").hexdigest()[:8]
    assert every.name == f"site-{expected}"
    assert first.line == 5


def test_duplicate_names_and_bad_lines_are_all_reported() -> None:
    parsed = parse_crontab("# name: x\n* * * * * a\n# name: x\n* * * * * b\n61 * * * * c\n", "f")
    assert [str(p) for p in parsed.problems] == [
        'f:5: minute field "61": 61 is out of range 0-59',
        'f:4: job name "x" already used on line 2',
    ]
