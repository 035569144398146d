"""Hot upgrade with real daemon processes, real sockets and real jobs: the new process
takes over the listening socket and the schedule, the old one drains and exits."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon import sse
from tests.daemon.conftest import DaemonProcess, daemons_of, is_running, wait_gone
from tests.helpers import run_cli

SLOW_SUCCESSOR = """
import os, time
if "EVERCRON_UPGRADE" in os.environ:
    time.sleep(float(os.environ.get("TEST_SUCCESSOR_DELAY", "0")))
"""


@pytest.fixture
def slow_successor(tmp_path: Path) -> dict[str, str]:
    """Environment making every upgrade successor wait a while before it starts (a
    `sitecustomize` that only acts in processes started by an upgrade)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_SUCCESSOR)
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "TEST_SUCCESSOR_DELAY": "3"}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _write_config(path: Path, *jobs: str, daemon: str = "") -> Path:
    path.write_text(f"[daemon]\n{daemon}\n" + "\n".join(jobs))
    return path


def test_upgrade_hands_over_and_the_old_process_exits_cleanly(
    start_daemon: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "evercron.pid"
    daemon: DaemonProcess = start_daemon("--pid-file", str(pid_file))
    old = daemon.process.pid
    assert int(pid_file.read_text()) == old
    answer = daemon.upgrade()
    assert answer["status"] == "upgraded" and answer["previous_pid"] == old
    assert answer["generation"] == 2 and answer["pid"] != old
    assert daemon.process.wait(timeout=30) == 0
    new = answer["pid"]
    assert daemon.serving_pid() == new and int(pid_file.read_text()) == new
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        status = client.get("/api/v1/status").json()
        assert status["pid"] == new
        assert [(g["pid"], g["role"], g["generation"]) for g in status["generations"]] == [
            (new, "serving", 2)
        ]
    os.kill(new, signal.SIGTERM)
    wait_gone(new)
    assert not pid_file.exists() and not (daemon.state_dir / "daemon.json").exists()
    assert daemons_of(daemon.state_dir) == []
    assert not list((daemon.state_dir / "owners").iterdir())


def test_sighup_upgrades(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.process.wait(timeout=30) == 0
    assert daemon.serving_pid() != daemon.process.pid
    assert httpx.get(f"{daemon.url}/healthz").json() == {"status": "ok"}


def test_a_job_running_at_the_upgrade_finishes_in_the_old_process(
    start_daemon: Any, tmp_path: Path
) -> None:
    # The job ends when the test says so, however long the upgrade takes under load.
    go = tmp_path / "go"
    daemon: DaemonProcess = start_daemon()
    command = f"while [ ! -e {go} ]; do sleep 0.05; done; echo finished"
    daemon.add_job(name="slow", schedule="@yearly", command=command)
    run_id = daemon.api("POST", "/api/v1/jobs/slow/trigger", 202)["id"]
    time.sleep(0.3)
    answer = daemon.upgrade()
    assert daemon.process.poll() is None, "the old process waits for its job"
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        status = client.get("/api/v1/status").json()
        assert status["pid"] == answer["pid"]
        draining = [g for g in status["generations"] if g["role"] == "draining"]
        assert draining == [
            {**draining[0], "pid": daemon.process.pid, "generation": 1, "running_runs": [run_id]}
        ]
    go.touch()
    assert daemon.process.wait(timeout=30) == 0
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        assert run["status"] == "succeeded" and run["exit_code"] == 0
        assert client.get(f"/api/v1/runs/{run_id}/output").content == b"finished\n"


def test_a_kill_through_the_new_process_reaches_a_job_of_the_old_one(
    start_daemon: Any, marker: Any
) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(name="long", schedule="@yearly", command=f"{marker.sleep()} & wait")
    run_id = daemon.api("POST", "/api/v1/jobs/long/trigger", 202)["id"]
    deadline = time.monotonic() + 10
    while not marker.alive():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    daemon.upgrade()
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        response = client.post(f"/api/v1/runs/{run_id}/kill")
        assert response.status_code == 202, response.text
    assert daemon.process.wait(timeout=30) == 0
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "killed"
    assert marker.alive() == []


def test_replace_ends_a_run_of_the_draining_process(start_daemon: Any, marker: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="newest", schedule="0 0 1 1 *", concurrency="replace", command=marker.sleep()
    )
    first = daemon.api("POST", "/api/v1/jobs/newest/trigger", 202)["id"]
    deadline = time.monotonic() + 10
    while not marker.alive():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    daemon.upgrade()  # the first run stays with the old, draining process
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        second = client.post("/api/v1/jobs/newest/trigger").json()["id"]
        assert daemon.process.wait(timeout=30) == 0  # its run was ended: it could exit
        ended = client.get(f"/api/v1/runs/{first}").json()
        assert ended["status"] == "killed"
        assert client.get(f"/api/v1/runs/{second}").json()["status"] == "running"
        client.post(f"/api/v1/runs/{second}/kill")
    deadline = time.monotonic() + 20
    while marker.alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_kept_alive_connection_is_told_to_close_after_the_handover(
    start_daemon: Any,
) -> None:
    daemon: DaemonProcess = start_daemon()
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as kept:
        first = kept.get("/api/v1/status")
        assert first.json()["pid"] == daemon.process.pid
        assert first.headers.get("connection") != "close"
        answer = daemon.upgrade()  # on another connection
        # The idle connection to the old process stays open for a moment: a request on
        # it is answered, with the instruction to reconnect.
        again = kept.get("/api/v1/status")
        assert again.status_code == 200
        assert again.json()["pid"] == daemon.process.pid
        assert again.headers["connection"] == "close"
        after = kept.get("/api/v1/status")  # a new connection: the new process
        assert after.json()["pid"] == answer["pid"]
    assert daemon.process.wait(timeout=30) == 0


def test_a_stop_signal_while_draining_gives_jobs_shutdown_grace(
    start_daemon: Any, tmp_path: Path, marker: Any
) -> None:
    config = _write_config(tmp_path / "evercron.toml", daemon='shutdown_grace = "1s"')
    daemon: DaemonProcess = start_daemon("--config", str(config))
    daemon.add_job(name="long", schedule="@yearly", command=f"{marker.sleep()} & wait")
    run_id = daemon.api("POST", "/api/v1/jobs/long/trigger", 202)["id"]
    daemon.upgrade()
    time.sleep(0.5)
    assert daemon.process.poll() is None, "draining: waits for its job"
    began = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=30) == 0
    assert 0.9 < time.monotonic() - began < 10
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "killed"
    assert marker.alive() == []


def test_every_second_job_fires_exactly_once_across_ten_upgrades(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    first_fds = _descriptors(daemon.process.pid)  # quiet: nothing scheduled yet
    daemon.add_job(name="tick", schedule="* * * * * * *", command="true")
    time.sleep(1.5)
    pids = [daemon.process.pid]
    upgrades_began = time.time()
    for _ in range(10):
        with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
            response = client.post("/api/v1/upgrade", timeout=120)
            assert response.status_code == 200, response.text
            pids.append(response.json()["pid"])
        time.sleep(0.3)
    upgrades_ended = time.time()
    time.sleep(1.5)
    for pid in pids[:-1]:
        wait_gone(pid)
    # Quiet again before counting: no new firing, and the last one finished (a firing is
    # `running` from its claim, just before its second, until its result is recorded).
    daemon.api("POST", "/api/v1/jobs/tick/pause")
    deadline = time.monotonic() + 10
    while daemon.api("GET", "/api/v1/runs", params={"job": "tick", "status": "running"}):
        assert time.monotonic() < deadline, "a firing never finished"
        time.sleep(0.1)
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        runs = client.get("/api/v1/runs", params={"job": "tick", "limit": 1000}).json()
    seconds = sorted(run["scheduled_at"] for run in runs)
    assert len(seconds) == len(set(seconds)), "a second fired twice"
    first = _epoch(seconds[0])
    last = _epoch(seconds[-1])
    assert [_epoch(s) for s in seconds] == list(range(first, last + 1)), "a second was missed"
    # The seconds counted cover all ten upgrades (1.5 s of firing before and after).
    assert first <= upgrades_began and last >= int(upgrades_ended)
    assert {run["status"] for run in runs} == {"succeeded"}
    assert {run["trigger"] for run in runs} == {"schedule"}
    # Nothing inherited piles up: quiet again, the 11th generation holds what the first
    # one did before anything was scheduled (a leak of even one descriptor per
    # generation would show as ten).
    last_fds = _descriptors(pids[-1])
    assert last_fds["file"] == first_fds["file"]
    assert last_fds["pipe"] == first_fds["pipe"], (first_fds, last_fds)
    assert last_fds["socket"] <= first_fds["socket"] + 2  # client connections come and go


def _descriptors(pid: int) -> dict[str, int]:
    """How many descriptors of each kind `pid` holds (files by path, pipes, sockets)."""
    kinds = {"file": 0, "pipe": 0, "socket": 0, "other": 0}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        kind = target.split(":", 1)[0] if ":" in target else "file"
        kinds[kind if kind in kinds else "other"] += 1
    return kinds


def _epoch(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def test_a_broken_config_fails_the_upgrade_and_the_old_process_keeps_serving(
    start_daemon: Any, tmp_path: Path
) -> None:
    config = _write_config(
        tmp_path / "evercron.toml",
        '[[job]]\nname = "a"\nschedule = "@hourly"\ncommand = "true"\n',
    )
    daemon: DaemonProcess = start_daemon("--config", str(config))
    config.write_text('[[job]]\nname = "a"\nschedule = "61 * * * *"\ncommand = "true"\n')
    response = daemon.http.post("/api/v1/upgrade", timeout=120)
    assert response.status_code == 503
    error = response.json()["error"]
    assert "upgrade failed" in error and "61" in error and "evercron.toml" in error
    assert daemon.process.poll() is None
    assert daemon.api("GET", "/api/v1/status")["pid"] == daemon.process.pid
    assert daemon.serving_pid() == daemon.process.pid
    assert _children(daemon.process.pid) == [], "the failed new process is gone"
    config.write_text(
        '[[job]]\nname = "a"\nschedule = "@hourly"\ncommand = "true"\n'
        '[[job]]\nname = "b"\nschedule = "@daily"\ncommand = "true"\n'
    )
    answer = daemon.upgrade()
    assert daemon.process.wait(timeout=30) == 0
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
        names = [job["name"] for job in client.get("/api/v1/jobs").json()]
        assert sorted(names) == ["a", "b"], "the new config's jobs are in"
        assert client.get("/api/v1/status").json()["pid"] == answer["pid"]


def test_upgrade_cli_reports_the_failure(start_daemon: Any, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "evercron.toml")
    daemon: DaemonProcess = start_daemon("--config", str(config))
    config.write_text("[daemon\n")

    def upgrade_cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "evercron", "upgrade", "--state-dir", str(daemon.state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = upgrade_cli()
    assert result.returncode != 0
    assert "upgrade failed" in result.stderr and "evercron.toml" in result.stderr
    assert "Traceback" not in result.stderr
    config.write_text("[daemon]\n")
    result = upgrade_cli()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("upgraded: pid ")
    assert daemon.process.wait(timeout=30) == 0


def test_a_new_process_not_ready_in_time_is_killed(
    start_daemon: Any, tmp_path: Path, slow_successor: dict[str, str]
) -> None:
    config = _write_config(tmp_path / "evercron.toml", daemon='upgrade_timeout = "1s"')
    daemon: DaemonProcess = start_daemon("--config", str(config), env=slow_successor)
    began = time.monotonic()
    response = daemon.http.post("/api/v1/upgrade", timeout=120)
    assert response.status_code == 503
    assert "not ready within 1s" in response.json()["error"]
    assert time.monotonic() - began < 2.5
    assert _children(daemon.process.pid) == []
    assert daemon.api("GET", "/api/v1/status")["pid"] == daemon.process.pid


HANGING_SUCCESSOR = """
import asyncio, os
if "EVERCRON_UPGRADE" in os.environ:
    from evercron.daemon import upgrade
    from evercron.scheduler import core

    load = core.Scheduler.load

    async def load_and_start_a_run(self):  # a run of this process, for sure
        await load(self)
        await self.trigger("busy")

    async def never_ready(self):
        await asyncio.sleep(3600)
        return False

    core.Scheduler.load = load_and_start_a_run
    upgrade.Predecessor.report_ready = never_ready
"""


def test_runs_of_a_new_process_that_never_got_ready_are_lost_and_ended(
    start_daemon: Any, tmp_path: Path, marker: Any
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HANGING_SUCCESSOR)
    config = _write_config(tmp_path / "evercron.toml", daemon='upgrade_timeout = "3s"')
    daemon: DaemonProcess = start_daemon("--config", str(config), env={"PYTHONPATH": str(hooks)})
    daemon.add_job(name="busy", schedule="@yearly", command=f"{marker.sleep()} & wait")
    response = daemon.http.post("/api/v1/upgrade", timeout=120)
    assert response.status_code == 503
    error = response.json()["error"]
    assert "not ready within 3s" in error
    successor = error.split("(pid ")[1].split(")")[0]
    runs = daemon.api("GET", "/api/v1/runs", params={"job": "busy"})
    assert len(runs) == 1 and runs[0]["trigger"] == "manual"
    assert runs[0]["status"] == "lost"
    assert f"({successor}-" in runs[0]["error"]
    assert marker.alive() == [], "what the run started was ended"
    assert daemon.api("GET", "/api/v1/status")["pid"] == daemon.process.pid


def test_two_upgrades_at_once_one_is_refused(
    start_daemon: Any, slow_successor: dict[str, str]
) -> None:
    daemon: DaemonProcess = start_daemon(env={**slow_successor, "TEST_SUCCESSOR_DELAY": "1"})

    def upgrade() -> httpx.Response:
        with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
            return client.post("/api/v1/upgrade", timeout=120)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(upgrade)
        time.sleep(0.3)
        second = pool.submit(upgrade)
        answers = sorted([first.result(), second.result()], key=lambda r: r.status_code)
    assert [a.status_code for a in answers] == [200, 409]
    assert "already in progress" in answers[1].json()["error"]
    assert daemon.process.wait(timeout=30) == 0
    again = upgrade()  # the next one goes to the new process and is accepted
    assert again.status_code == 200, again.text
    assert again.json()["generation"] == 3
    wait_gone(answers[0].json()["pid"])
    assert daemons_of(daemon.state_dir) == [again.json()["pid"]]


def test_sigterm_during_an_upgrade_stops_everything_cleanly(
    start_daemon: Any, slow_successor: dict[str, str]
) -> None:
    daemon: DaemonProcess = start_daemon(env=slow_successor)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(daemon.http.post, "/api/v1/upgrade", timeout=120)
        deadline = time.monotonic() + 10
        while not (children := _children(daemon.process.pid)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        daemon.process.send_signal(signal.SIGTERM)
        response = answer.result()
    assert response.status_code == 503 and "stopping" in response.json()["error"]
    assert daemon.process.wait(timeout=30) == 0
    for child in children:
        wait_gone(child, timeout=5)


def _follow(url: str, headers: Any, run_id: int, events: list[tuple[int, str, str]]) -> None:
    """Follow a run's output, reconnecting with Last-Event-ID until its `end` event."""
    last: str | None = None
    for _ in range(50):
        sent = dict(headers)
        if last is not None:
            sent["Last-Event-ID"] = last
        with httpx.Client(base_url=url, timeout=60) as client:
            try:
                with client.stream(
                    "GET", f"/api/v1/runs/{run_id}/output?follow=1", headers=sent
                ) as response:
                    for event in sse.parse(response.read()):
                        events.append((event.id, event.kind, _text_of(event)))
                        last = str(event.id)
                        if event.kind == "end":
                            return
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    raise AssertionError("the follower never saw the end of the run")


def _text_of(event: sse.Event) -> str:
    return str(event.data.get("text", event.data.get("status", "")))


def test_a_live_output_follower_survives_an_upgrade(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    daemon.add_job(
        name="talk",
        schedule="@yearly",
        command="for i in $(seq 1 40); do echo line $i; sleep 0.05; done",
    )
    run_id = daemon.api("POST", "/api/v1/jobs/talk/trigger", 202)["id"]
    events: list[tuple[int, str, str]] = []
    follower = threading.Thread(
        target=_follow, args=(daemon.url, daemon.http.headers, run_id, events)
    )
    follower.start()
    cli = subprocess.Popen(
        [
            *(sys.executable, "-m", "evercron", "logs", "-f", str(run_id)),
            *("--state-dir", str(daemon.state_dir)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    daemon.upgrade()
    follower.join(timeout=60)
    out, err = cli.communicate(timeout=60)
    expected = "".join(f"line {i}\n" for i in range(1, 41))
    chunks = [e for e in events if e[1] == "stdout"]
    offsets = [offset for offset, _, _ in chunks]
    assert offsets == sorted(set(offsets)), "a chunk arrived twice or out of order"
    assert "".join(text for _, _, text in chunks) == expected  # every byte exactly once
    assert events[-1][1:] == ("end", "succeeded")
    assert cli.returncode == 0, err
    assert out.decode() == expected
    assert daemon.process.wait(timeout=30) == 0


class _Load:
    """Requests in a loop from two kinds of client until stopped; every failure kept."""

    def __init__(self, url: str, headers: Any) -> None:
        self.url = url
        self.headers = dict(headers)
        self.done = threading.Event()
        self.failures: list[str] = []
        self.count = 0
        self.threads = [
            threading.Thread(target=self._fresh_connections),
            threading.Thread(target=self._keep_alive),
        ]

    def __enter__(self) -> _Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _check(self, send: Any) -> None:
        try:
            response = send()
            if response.status_code != 200:
                self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
            self.count += 1
        except httpx.HTTPError as error:
            self.failures.append(f"{type(error).__name__}: {error}")

    def _fresh_connections(self) -> None:
        while not self.done.is_set():
            self._check(lambda: httpx.get(f"{self.url}/api/v1/jobs", headers=self.headers))

    def _keep_alive(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers) as client:
            while not self.done.is_set():
                self._check(lambda: client.get("/api/v1/status"))


def test_upgrades_under_load_fail_no_request(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    with _Load(daemon.url, daemon.http.headers) as load:
        time.sleep(0.5)
        for _ in range(3):
            with httpx.Client(base_url=daemon.url, headers=daemon.http.headers) as client:
                assert client.post("/api/v1/upgrade", timeout=120).status_code == 200
            time.sleep(0.5)
    assert load.failures == []
    assert load.count > 100


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A datagram socket standing in for systemd's notify socket; messages collected."""
    path = str(tmp_path / "notify.sock")
    messages: list[str] = []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.1)
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue

    thread = threading.Thread(target=collect)
    thread.start()
    yield path, messages
    stop.set()
    thread.join()
    sock.close()


def _wait_for(messages: list[str], text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in messages:
            if text in message:
                return message
        time.sleep(0.02)
    raise AssertionError(f"no notification with {text!r}: {messages}")


def test_sd_notify_messages_through_start_upgrade_and_stop(
    start_daemon: Any, notify_socket: tuple[str, list[str]]
) -> None:
    path, messages = notify_socket
    daemon: DaemonProcess = start_daemon(env={"NOTIFY_SOCKET": path})
    _wait_for(messages, "READY=1")
    assert messages[0].split("\n")[0] == "READY=1"
    answer = daemon.upgrade()
    reloading = _wait_for(messages, "RELOADING=1")
    assert int(reloading.split("MONOTONIC_USEC=")[1].split("\n")[0]) > 0
    handed = _wait_for(messages, f"MAINPID={answer['pid']}")
    assert "READY=1" in handed
    assert messages.index(reloading) < messages.index(handed)
    assert daemon.process.wait(timeout=30) == 0
    os.kill(answer["pid"], signal.SIGTERM)
    _wait_for(messages, "STOPPING=1")
    wait_gone(answer["pid"])
    # the jobs never see the notify socket
    assert not any("STOPPING" in m for m in messages[: messages.index(handed)])


def test_jobs_do_not_inherit_the_notify_socket_or_upgrade_settings(
    start_daemon: Any, notify_socket: tuple[str, list[str]]
) -> None:
    path, _ = notify_socket
    daemon: DaemonProcess = start_daemon(env={"NOTIFY_SOCKET": path})
    daemon.upgrade()
    with httpx.Client(base_url=daemon.url, headers=daemon.http.headers, timeout=30) as client:
        created = client.post(
            "/api/v1/jobs", json={"name": "env", "schedule": "@yearly", "command": "env"}
        )
        assert created.status_code == 201
        run_id = client.post("/api/v1/jobs/env/trigger").json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/api/v1/runs/{run_id}").json()["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        output = client.get(f"/api/v1/runs/{run_id}/output").text
    assert "EVERCRON_RUN_ID=" in output
    for name in ("NOTIFY_SOCKET", "EVERCRON_UPGRADE", "LISTEN_FDS", "LISTEN_PID"):
        assert f"{name}=" not in output


def _free_port() -> int:
    """A port the OS picked (bound to port 0, then released for the activator to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _socket_activated(state_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`evercron serve` under systemd-socket-activate; the process and the daemon URL."""
    for _ in range(5):  # another process may take the port between probe and bind
        port = _free_port()
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [
                    "systemd-socket-activate",
                    f"--listen=127.0.0.1:{port}",
                    "--fdname=api",
                    *(sys.executable, "-m", "evercron", "serve", "--state-dir", str(state_dir)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if f"Listening on 127.0.0.1:{port}" in log_path.read_text():
                # The first connection starts the service; it answers on the same socket.
                url = f"http://127.0.0.1:{port}"
                assert httpx.get(f"{url}/healthz", timeout=30).json() == {"status": "ok"}
                while "evercron listening on" not in log_path.read_text():  # daemon.json
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.02)
                return process, url
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
        if "Address already in use" not in log_path.read_text():
            raise AssertionError(log_path.read_text())
    raise AssertionError("no free port for systemd-socket-activate")


def test_socket_activation_adopts_the_socket(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    log_path = tmp_path / "daemon.log"
    process, url = _socket_activated(state_dir, log_path)
    try:
        assert "socket activation: listening on api" in log_path.read_text()
        assert process.pid == json.loads((state_dir / "daemon.json").read_text())["pid"]
        assert httpx.get(f"{url}/healthz").status_code == 200
        token = json.loads((state_dir / "daemon.json").read_text())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        answer = httpx.post(f"{url}/api/v1/upgrade", headers=headers, timeout=120).json()
        assert answer["status"] == "upgraded"
        assert process.wait(timeout=30) == 0
        assert httpx.get(f"{url}/healthz").status_code == 200  # the same socket, adopted
        os.kill(answer["pid"], signal.SIGTERM)
        wait_gone(answer["pid"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not is_running(process.pid)


def test_a_restart_after_the_new_process_crashed_works_while_the_old_one_drains(
    start_daemon: Any, tmp_path: Path
) -> None:
    # As systemd would after the serving process died: start `serve` again at once. The
    # old process still drains a job; it must neither block the restart nor lose its run.
    # (The job ends when the test says so, however long the steps take under load.)
    go = tmp_path / "go"
    daemon: DaemonProcess = start_daemon()
    command = f"while [ ! -e {go} ]; do sleep 0.05; done; echo finished"
    daemon.add_job(name="slow", schedule="@yearly", command=command)
    run_id = daemon.api("POST", "/api/v1/jobs/slow/trigger", 202)["id"]
    time.sleep(0.3)
    successor = daemon.upgrade()["pid"]
    os.kill(successor, signal.SIGKILL)
    wait_gone(successor)
    assert daemon.process.poll() is None, "the old process still drains its job"
    restarted: DaemonProcess = start_daemon(state_dir=daemon.state_dir)
    assert restarted.api("GET", "/api/v1/status")["pid"] == restarted.process.pid
    assert restarted.api("GET", f"/api/v1/runs/{run_id}")["status"] == "running"
    go.touch()
    assert daemon.process.wait(timeout=30) == 0
    run = restarted.api("GET", f"/api/v1/runs/{run_id}")
    assert run["status"] == "succeeded", run
    assert restarted.http.get(f"/api/v1/runs/{run_id}/output").content == b"finished\n"
    # The old process left the restarted one's address and its own lock alone.
    assert restarted.serving_pid() == restarted.process.pid
    again = run_cli("status", "--state-dir", str(daemon.state_dir), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["pid"] == restarted.process.pid
    assert restarted.stop() == 0
