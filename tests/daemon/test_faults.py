"""Real faults against a real daemon: nothing lost, nothing silent.

A second process holds the store's lock, the state dir's filesystem fills up, the daemon
is stopped (SIGSTOP) for longer than a job's runs take. Every expected firing ends up
as exactly one run row - run late, or recorded skipped with the reason - and a
`forbid` job never runs twice at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import DaemonProcess
from tests.notify.receivers import WebhookReceiver


def config(tmp_path: Path, **daemon: str) -> str:
    path = tmp_path / "evercron.toml"
    lines = ["[daemon]", *(f'{key} = "{value}"' for key, value in daemon.items())]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def rows_by_second(daemon: DaemonProcess, job: str) -> dict[int, list[dict[str, Any]]]:
    """The job's run rows, by the second they were scheduled for."""
    runs = daemon.api("GET", f"/api/v1/runs?job={job}&limit=1000")
    found: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        second = int(dt.datetime.fromisoformat(run["scheduled_at"]).timestamp())
        found.setdefault(second, []).append(run)
    return found


def assert_every_second_has_one_row(
    found: dict[int, list[dict[str, Any]]], first: int, last: int
) -> None:
    missing = [s for s in range(first, last + 1) if s not in found]
    doubled = {s: rows for s, rows in found.items() if len(rows) > 1}
    assert not missing, f"firings without a row: {missing}"
    assert not doubled, f"firings with several rows: {doubled}"
    for rows in found.values():
        (run,) = rows
        assert run["status"] in ("succeeded", "skipped"), run
        if run["status"] == "skipped":
            assert run["error"], run


@contextlib.contextmanager
def write_lock_held(database: Path) -> Iterator[None]:
    """Another process holds SQLite's write lock on `database` while the block runs."""
    code = (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(database)!r}, isolation_level=None, timeout=30)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "db.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.write(b"\n")
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_store_locked_by_another_process_loses_no_firing(
    start_daemon: Any, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    daemon: DaemonProcess = start_daemon("--config", config(tmp_path, store_retry_interval="0.5s"))
    daemon.add_job(
        name="tick",
        schedule="* * * * * * *",
        concurrency="allow",
        misfire_grace="3s",
        misfire="skip",
        command=f"echo $EVERCRON_SCHEDULED_AT >> {ledger}",
    )
    time.sleep(2)
    first = int(time.time()) + 1
    with write_lock_held(daemon.state_dir / "evercron.db"):
        time.sleep(9)  # beyond SQLite's busy timeout, and beyond the job's misfire_grace
    time.sleep(4)
    last = int(time.time()) - 2
    found = rows_by_second(daemon, "tick")
    assert daemon.stop() == 0
    assert_every_second_has_one_row(
        {s: r for s, r in found.items() if first <= s <= last}, first, last
    )
    skipped = [r for s, (r,) in found.items() if first <= s <= last and r["status"] == "skipped"]
    assert skipped and all(r["error"].startswith("missed") for r in skipped)
    log = daemon.log()
    assert "the store refuses writes" in log and "accepts writes again" in log
    assert log.count("the store refuses writes") == 1  # told once, not per write
    assert "Task exception was never retrieved" not in log and "Traceback" not in log


def test_a_locked_store_pauses_the_chores_it_fails_never_ends_them(
    start_daemon: Any, tmp_path: Path
) -> None:
    with WebhookReceiver() as receiver:
        path = tmp_path / "evercron.toml"
        path.write_text(
            '[daemon]\nstore_retry_interval = "0.5s"\n'
            f'[[notify]]\nname = "hook"\nurl = "{receiver.url}"\nevery_run = true\n'
            '[[job]]\nname = "bad"\nschedule = "0 0 1 1 *"\ncommand = "exit 3"\n'
        )
        daemon: DaemonProcess = start_daemon("--config", str(path))
        with write_lock_held(daemon.state_dir / "evercron.db"):
            time.sleep(8)  # beyond SQLite's busy timeout: the delivery loop's claim fails
        run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/bad/trigger", 202)["id"])
        (sent,) = receiver.wait_for(1)
        assert sent.json()["run"]["id"] == run["id"] and sent.json()["event"] == "failed"
        log = daemon.log()
        assert daemon.stop() == 0
    assert "notification delivery paused: " in log
    assert "Task exception was never retrieved" not in log and "Traceback" not in log


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only: this is a real full filesystem, not a simulation), used
    as the state dir (the daemon's log goes beside it, on the real disk)."""
    mount = tmp_path / "state"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; the filler file."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, b"\0" * size)
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_loses_no_firing_and_output_is_accounted(
    start_daemon: Any, tmp_path: Path, small_filesystem: Path
) -> None:
    daemon: DaemonProcess = start_daemon(
        "--config", config(tmp_path, store_retry_interval="0.5s"), state_dir=small_filesystem
    )
    daemon.add_job(
        name="tick",
        schedule="* * * * * * *",
        concurrency="allow",
        misfire_grace="3s",
        misfire="skip",
        command="true",
    )
    daemon.add_job(
        name="talker",
        schedule="0 0 1 1 *",
        max_output="8MiB",
        command="sleep 1; head -c 600000 /dev/zero | tr '\\0' x",
    )
    time.sleep(2)
    first = int(time.time()) + 1
    talker = daemon.api("POST", "/api/v1/jobs/talker/trigger", 202)
    filler = fill(small_filesystem)
    refused = daemon.http.post("/api/v1/jobs/tick/trigger")  # someone waits: told, not hung
    assert refused.status_code == 503 and "store refuses writes" in refused.json()["error"]
    time.sleep(4)
    filler.unlink()
    time.sleep(5)
    last = int(time.time()) - 2
    found = rows_by_second(daemon, "tick")
    run = daemon.wait_for_run(talker["id"])
    output = daemon.http.get(f"/api/v1/runs/{talker['id']}/output").content
    assert daemon.stop() == 0
    assert_every_second_has_one_row(
        {s: r for s, r in found.items() if first <= s <= last}, first, last
    )
    assert run["status"] == "succeeded"
    # The stored record says what was kept: here everything, once the disk had room.
    assert run["output_bytes"] == 600000 and not run["output_truncated"]
    assert output == b"x" * 600000
    assert "Traceback" not in daemon.log()


def test_forbid_holds_after_a_stall(start_daemon: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="single",
        schedule="* * * * * * *",
        concurrency="forbid",
        misfire="run-all",
        misfire_grace="2s",
        command=f"echo start $(date +%s.%N) >> {ledger}; sleep 1.5; "
        f"echo end $(date +%s.%N) >> {ledger}",
    )
    time.sleep(2.5)
    first = int(time.time()) + 1
    daemon.process.send_signal(signal.SIGSTOP)
    time.sleep(8)
    daemon.process.send_signal(signal.SIGCONT)
    last = int(time.time()) + 2
    # The catch-ups run one after the other (run-all, forbid): wait until each second
    # of the window has its row, however long they take on a loaded machine.
    deadline = time.monotonic() + 60
    while True:
        found = rows_by_second(daemon, "single")
        window = [found.get(second, [{"status": "running"}]) for second in range(first, last + 1)]
        if all(run["status"] != "running" for rows in window for run in rows):
            break
        assert time.monotonic() < deadline, sorted(set(range(first, last + 1)) - set(found))
        time.sleep(0.5)
    metrics = daemon.http.get("/metrics").text
    assert daemon.stop() == 0
    depth = 0
    for line in sorted(ledger.read_text().splitlines(), key=lambda text: float(text.split()[1])):
        depth += 1 if line.startswith("start") else -1
        assert depth <= 1, "two runs of a forbid job overlapped"
    window = {s: r for s, r in found.items() if first <= s <= last}
    assert_every_second_has_one_row(window, first, last)
    reasons = [r["error"] for (r,) in window.values() if r["status"] == "skipped"]
    assert any("concurrency=forbid" in reason for reason in reasons)
    assert 'evercron_firings_missed_total{job_name="single"} 0.0' in metrics


def test_missed_firings_are_counted_per_job(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="strict",
        schedule="* * * * * * *",
        concurrency="allow",
        misfire="skip",
        misfire_grace="0.5s",
        command="true",
    )
    daemon.add_job(name="idle", schedule="0 0 1 1 *", command="true")
    metrics = daemon.http.get("/metrics").text
    assert 'evercron_firings_missed_total{job_name="idle"} 0.0' in metrics  # from start-up
    time.sleep(1.5)
    daemon.process.send_signal(signal.SIGSTOP)
    time.sleep(4)
    daemon.process.send_signal(signal.SIGCONT)
    time.sleep(2)
    metrics = daemon.http.get("/metrics").text
    missed = [
        r
        for r in daemon.api("GET", "/api/v1/runs?job=strict&status=skipped&limit=1000")
        if r["error"].startswith("missed")
    ]
    assert daemon.stop() == 0
    assert len(missed) >= 2
    assert f'evercron_firings_missed_total{{job_name="strict"}} {float(len(missed))}' in metrics
    assert "evercron_firings_missed " not in metrics  # the old gauge is gone


def test_the_store_file_is_readable_by_its_owner_only(start_daemon: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    daemon: DaemonProcess = start_daemon(state_dir=state)
    daemon.add_job(name="secret", schedule="0 0 1 1 *", command="true", env={"TOKEN": "s3cret"})
    assert daemon.stop() == 0
    for path in state.iterdir():
        if path.name.startswith("evercron.db") or path.name in ("token", "daemon.json"):
            assert path.stat().st_mode & 0o077 == 0, path
    with sqlite3.connect(state / "evercron.db") as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
