"""The CLI client commands against a real daemon, as a user types them."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli


def cli(daemon: DaemonProcess, *args: str) -> Any:
    """Run a client command against `daemon` with --json; its parsed output."""
    done = run_cli(args[0], "--state-dir", str(daemon.state_dir), "--json", *args[1:])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_the_client_commands(start_daemon: Any, tmp_path: Path) -> None:
    daemon: DaemonProcess = start_daemon()
    added = cli(daemon, "add", "greet", "@yearly", "--timeout", "30s", "--", "echo", "hello")
    assert added["name"] == "greet" and added["timeout"] == 30
    assert [job["name"] for job in cli(daemon, "jobs")] == ["greet"]
    run = cli(daemon, "trigger", "greet")
    daemon.wait_for_run(run["id"])
    logs = run_cli("logs", str(run["id"]), "--state-dir", str(daemon.state_dir))
    assert logs.returncode == 0 and logs.stdout == "hello\n"
    followed = run_cli("logs", "-f", str(run["id"]), "--state-dir", str(daemon.state_dir))
    assert followed.stdout == "hello\n" and f"[run {run['id']} succeeded]" in followed.stderr
    runs = cli(daemon, "runs", "--job", "greet")
    assert [r["status"] for r in runs] == ["succeeded"]
    assert cli(daemon, "pause", "greet")["paused"] is True
    assert cli(daemon, "resume", "greet")["paused"] is False
    status = cli(daemon, "status")
    assert status["pid"] == daemon.process.pid and status["generations"][0]["role"] == "serving"
    table = run_cli("runs", "--state-dir", str(daemon.state_dir))
    assert table.returncode == 0 and "succeeded" in table.stdout and "greet" in table.stdout
    # Tables are for people: times in their own zone, to the second (JSON stays UTC).
    next_fire = dt.datetime.fromisoformat(cli(daemon, "jobs")[0]["next_fire_at"])
    tokyo = run_cli("jobs", "--state-dir", str(daemon.state_dir), env={"TZ": "Asia/Tokyo"})
    shown = next_fire.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    assert tokyo.returncode == 0 and shown in tokyo.stdout, tokyo.stdout
    cli(daemon, "rm", "greet")
    assert cli(daemon, "jobs") == []
    assert cli(daemon, "stop") == {"status": "stopping"}
    assert daemon.process.wait(timeout=30) == 0


def test_kill_through_the_cli(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    cli(daemon, "add", "long", "@yearly", "--", "sleep", "30")
    run = cli(daemon, "trigger", "long")
    time.sleep(0.3)
    killed = run_cli("kill", str(run["id"]), "--state-dir", str(daemon.state_dir))
    assert killed.returncode == 0 and f"killing run {run['id']}" in killed.stdout
    assert daemon.wait_for_run(run["id"])["status"] == "killed"


def test_errors_are_one_line(start_daemon: Any, tmp_path: Path) -> None:
    daemon: DaemonProcess = start_daemon()
    for args, message in (
        (["trigger", "missing"], 'no job named "missing"'),
        (["add", "x", "0 24 * * *", "--", "true"], 'hour field "24"'),
        (["kill", "123456"], "no run 123456"),
    ):
        done = run_cli(args[0], "--state-dir", str(daemon.state_dir), *args[1:])
        assert done.returncode == 1, args
        assert done.stderr.startswith("evercron: error: ") and message in done.stderr
        assert len(done.stderr.splitlines()) == 1
    wrong = run_cli("jobs", "--state-dir", str(daemon.state_dir), "--token", "bad")
    assert wrong.returncode == 1 and "wrong API token" in wrong.stderr
    absent = run_cli("jobs", "--state-dir", str(tmp_path / "nothing"))
    assert absent.returncode == 1 and "no running evercron daemon found" in absent.stderr
    daemon.stop()
    gone = run_cli("jobs", "--url", daemon.url, "--token", "t")
    assert gone.returncode == 1 and "cannot reach the evercron daemon" in gone.stderr
    assert len(gone.stderr.splitlines()) == 1


def test_reboot_job_runs_once_per_boot(start_daemon: Any, tmp_path: Path) -> None:
    crontab = tmp_path / "boot.crontab"
    marks = tmp_path / "marks"
    crontab.write_text(f"# name: at-boot\n@reboot echo booted >> {marks}\n")
    for _ in range(3):
        daemon: DaemonProcess = start_daemon("--crontab", str(crontab))
        time.sleep(1)
        assert daemon.stop() == 0
    assert marks.read_text() == "booted\n"


def test_runs_status_is_checked_before_asking_the_daemon(tmp_path: Path) -> None:
    done = run_cli("runs", "--status", "sleeping", "--state-dir", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'sleeping' is not one of 'running', 'succeeded'" in done.stderr


def test_add_runs_the_words_given_or_one_shell_line(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    words = ("printf", "[%s]\\n", "a b", "$HOME", "it's", "*")
    added = cli(daemon, "add", "words", "@yearly", "--", *words)
    assert added["command"] == "printf '[%s]\\n' 'a b' '$HOME' 'it'\"'\"'s' '*'"
    line = cli(daemon, "add", "line", "@yearly", "--", "echo one; echo 'two  spaces'")
    assert line["command"] == "echo one; echo 'two  spaces'"
    outputs = {}
    for name in ("words", "line"):
        run = daemon.wait_for_run(cli(daemon, "trigger", name)["id"])
        logs = run_cli("logs", str(run["id"]), "--state-dir", str(daemon.state_dir))
        outputs[name] = logs.stdout
    assert outputs == {"words": "[a b]\n[$HOME]\n[it's]\n[*]\n", "line": "one\ntwo  spaces\n"}


def test_arguments_that_are_not_utf8_are_one_line(tmp_path: Path) -> None:
    # A byte that is no UTF-8 reaches Python as a lone surrogate (here given as one).
    where = ("--url", "http://127.0.0.1:9", "--token", "t")
    for args, shown in (
        (["runs", "--job", "\udcff", *where], '--job "\\udcff"'),
        (["trigger", "a\udcff", *where], 'JOB "a\\udcff"'),
        (["add", "x", "@daily", *where, "--", "echo", "\udcff"], 'COMMAND "\\udcff"'),
        (["add", "x", "@daily", "--timezone", "\udcff", *where, "--", "true"], "--timezone"),
    ):
        done = run_cli(*args)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"evercron: error: {shown}"), done.stderr
        assert done.stderr.endswith(" is not valid UTF-8 text\n"), done.stderr


def test_a_url_or_token_that_cannot_be_sent_is_one_line() -> None:
    for args, message in (
        (["--url", "nonsense", "--token", "t"], '"nonsense" is not an http:// or https:// URL'),
        (["--url", "http://[::1", "--token", "t"], '"http://[::1" is not a usable URL: '),
        (["--url", "http://h\udcff:1", "--token", "t"], '"http://h\\udcff:1" is not a usable'),
        (["--url", "http://127.0.0.1:9", "--token", "t\u00e9"], "the API token must be printable"),
    ):
        done = run_cli("status", *args)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"evercron: error: {message}"), done.stderr
        assert len(done.stderr.splitlines()) == 1
