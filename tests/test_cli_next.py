"""`evercron next` and `evercron check`, run as real processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli


def test_next_prints_iso_times_and_explains_on_stderr() -> None:
    done = run_cli(
        "next", "0 9 * * MON-FRI", "-n", "3", "--tz", "Europe/Berlin", "--after", "2024-03-29T00:00"
    )
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "2024-03-29T09:00:00+01:00",
        "2024-04-01T09:00:00+02:00",
        "2024-04-02T09:00:00+02:00",
    ]
    assert done.stderr.strip() == "At 09:00, Monday through Friday"


def test_next_accepts_fields_as_separate_arguments_and_offsets() -> None:
    done = run_cli(
        "next",
        "--tz",
        "UTC",
        "--after",
        "2024-01-01T00:00:00+02:00",
        "-n",
        "1",
        "0",
        "*",
        "*",
        "*",
        "*",
    )
    assert done.returncode == 0
    assert done.stdout == "2023-12-31T23:00:00+00:00\n"


def test_next_json() -> None:
    done = run_cli(
        "next", "@every 90s", "-n", "2", "--tz", "UTC", "--after", "2024-01-01T00:00:00", "--json"
    )
    assert done.returncode == 0
    payload = json.loads(done.stdout)
    assert payload["times"] == ["2024-01-01T00:01:30+00:00", "2024-01-01T00:03:00+00:00"]
    assert payload["timezone"] == "UTC"
    assert "90" in payload["expression"]


def test_next_defaults_to_now_in_the_local_zone() -> None:
    done = run_cli("next", "* * * * *", "-n", "2", env={"TZ": "Asia/Kolkata"})
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.endswith("+05:30") for line in lines)


def test_bad_expression_is_one_line_and_exit_2() -> None:
    done = run_cli("next", "0 24 * * *")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == 'evercron: error: hour field "24": 24 is out of range 0-23\n'


def test_bad_options_are_one_line_and_exit_2() -> None:
    for args in (
        ["next", "@daily", "--tz", "Mars/Olympus"],
        ["next", "@daily", "--after", "yesterday"],
        ["next", "@daily", "-n", "0"],
        ["next"],
    ):
        done = run_cli(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("evercron: error: ")
        assert "Traceback" not in done.stderr


def test_zone_names_that_are_folders_or_too_long_are_one_line() -> None:
    for name in ("America", "Etc", "A" * 300):
        done = run_cli("next", "@daily", "--tz", name)
        assert done.returncode == 2, name
        assert done.stderr == f'evercron: error: unknown time zone "{name}"\n'


def test_six_fields_ending_in_star_warn() -> None:
    done = run_cli("next", "*/5 * * * * *", "-n", "1")
    assert done.returncode == 0
    assert "warning: the 6th field is the year" in done.stderr


def test_reboot_has_no_times() -> None:
    done = run_cli("next", "@reboot")
    assert done.returncode == 0 and done.stdout == ""
    assert "boot" in done.stderr


def test_check_lists_jobs_with_next_times(tmp_path: Path) -> None:
    crontab = tmp_path / "jobs.crontab"
    crontab.write_text("# name: hello\n*/5 * * * * echo hi\n@daily echo daily\n")
    done = run_cli("check", str(crontab), "-n", "2", env={"TZ": "UTC"})
    assert done.returncode == 0, done.stderr
    assert "hello  [*/5 * * * *]  echo hi" in done.stdout
    assert done.stdout.count("next: ") == 4


def test_check_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    crontab = tmp_path / "bad"
    crontab.write_text("0 24 * * * echo a\n* * * * * echo ok\nCRON_TZ=Nowhere\nnonsense\n")
    done = run_cli("check", str(crontab))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines == [
        f'evercron: error: {crontab}:1: hour field "24": 24 is out of range 0-23',
        f'evercron: error: {crontab}:3: unknown time zone "Nowhere"',
        f"evercron: error: {crontab}:4: expected a schedule followed by a command",
    ]


def test_check_missing_file(tmp_path: Path) -> None:
    done = run_cli("check", str(tmp_path / "absent"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr and "Traceback" not in done.stderr
