"""Three nodes on one database under faults, checked by the ledger checker.

The faults are chained in one scenario per test, so the suite stays within its time:
SIGKILL of a node mid-run and of a node right after its claims, SIGSTOP past the lease
then SIGCONT, an immediate database restart; and, in the second test, one node cut off
from the database by a proxy that black-holes its traffic.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.checker import SOLO_LINE, TICK_LINE, check, events_of, runs_of
from tests.cluster.proxy import BlackHoleProxy
from tests.daemon.conftest import DaemonProcess
from tests.markers import Marker
from tests.postgres import PostgresServer

LEASE = 5.0
TICKERS = ["tick-1", "tick-2", "tick-3"]


def wait_for(check: Any, timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def create_jobs(node: DaemonProcess, ledger: Path, marker: Marker) -> None:
    for name in TICKERS:
        node.add_job(name=name, schedule="* * * * * * *", concurrency="allow",
                     command=TICK_LINE.format(ledger))  # fmt: skip
    node.add_job(name="solo", schedule="* * * * * * *", concurrency="forbid",
                 command=SOLO_LINE.format(ledger=ledger, seconds=1.5), kill_grace="1s")  # fmt: skip
    node.add_job(name="long", schedule="@yearly", command=marker.sleep(), kill_grace="1s")


def state_of(node: DaemonProcess, name: str) -> str:
    states = {n["name"]: n["state"] for n in node.api("GET", "/api/v1/nodes")}
    return states.get(name, "unknown")


def run_of(node: DaemonProcess, run_id: int) -> dict[str, Any]:
    run: dict[str, Any] = node.api("GET", f"/api/v1/runs/{run_id}")
    return run


def lost_counted(node: DaemonProcess) -> float:
    """The node's count of lost manual runs of the job "long"."""
    for family in text_string_to_metric_families(node.http.get("/metrics").text):
        for sample in family.samples:
            wanted = {"job_name": "long", "status": "lost", "trigger": "manual"}
            if sample.name == "evercron_runs_total" and sample.labels == wanted:
                return sample.value
    return 0.0


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_kills_a_stop_past_the_lease_and_a_database_restart(
    start_node: Any, postgres_server: PostgresServer, postgres_url: str, tmp_path: Path,
    marker: Marker,
) -> None:  # fmt: skip
    ledger = tmp_path / "ledger"
    a, b, c = start_node("a"), start_node("b"), start_node("c")
    create_jobs(a, ledger, marker)
    since = now()
    time.sleep(4)

    # SIGKILL mid-run: b's command outlives it, its run is lost within lease + 5 s.
    long_on_b = b.api("POST", "/api/v1/jobs/long/trigger", 202)["id"]
    wait_for(marker.alive, what="the long command on b")
    b.process.kill()
    killed_at = time.monotonic()
    lost = wait_for(lambda: run_of(a, long_on_b)["status"] == "lost", LEASE + 8, "b's run lost")
    assert lost and time.monotonic() - killed_at < LEASE + 5
    assert "node b stopped renewing its lease" in run_of(a, long_on_b)["error"]
    # counted once, by the node that reaped it (b's own counts died with it)
    wait_for(lambda: lost_counted(a) + lost_counted(c) == 1, 5, "the lost run counted")
    for pid in marker.alive():  # (another machine's process in real life)
        os.kill(pid, signal.SIGKILL)

    # SIGKILL right after a claim: c claims a second ahead of time (concurrency allow).
    wait_for(lambda: time.time() % 1 < 0.5 and (time.time() % 1) > 0.3)
    c.process.kill()
    time.sleep(LEASE + 4)
    b, c = start_node("b"), start_node("c")
    wait_for(lambda: state_of(a, "c") == "alive" and state_of(a, "b") == "alive")

    # SIGSTOP past the lease, then SIGCONT: a's command is ended, its result rejected.
    long_on_a = a.api("POST", "/api/v1/jobs/long/trigger", 202)["id"]
    wait_for(marker.alive, what="the long command on a")
    a.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: run_of(b, long_on_a)["status"] == "lost", LEASE + 8, "a's run lost")
    assert marker.alive(), "a's command runs on while a is stopped"
    a.process.send_signal(signal.SIGCONT)
    wait_for(lambda: not marker.alive(), 10, "a's command ended by a itself")
    wait_for(lambda: events_of(postgres_url, "late-result"), 10, "a's late result")
    assert run_of(b, long_on_a)["status"] == "lost"
    wait_for(lambda: state_of(b, "a") == "alive", 15, "a rejoined")

    # The database restarts at once: no node fences itself, nothing is lost.
    lost_before = sum(1 for run in runs_of(postgres_url) if run["status"] == "lost")
    postgres_server.restart_immediately()
    time.sleep(LEASE)
    wait_for(lambda: all(state_of(a, n) == "alive" for n in "abc"), 10, "all alive")
    until = now()
    time.sleep(2)
    for node in (a, b, c):
        assert node.stop() == 0
    assert sum(1 for run in runs_of(postgres_url) if run["status"] == "lost") == lost_before
    for node in (a, b, c):
        assert "self-fenced" not in node.log() or node is a, node.log()[-2000:]
    findings = check(postgres_url, ledger, TICKERS, "solo", since, until - dt.timedelta(seconds=2))
    findings.assert_clean()


def test_a_node_cut_off_from_the_database_fences_itself_before_others_reap(
    start_node: Any, postgres_server: PostgresServer, postgres_url: str, tmp_path: Path,
    marker: Marker,
) -> None:  # fmt: skip
    ledger = tmp_path / "ledger"
    beats = tmp_path / "beats"
    with BlackHoleProxy(("127.0.0.1", postgres_server.port)) as proxy:
        far_url = postgres_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
        a, b = start_node("a"), start_node("b")
        c = start_node("c", url=far_url)
        create_jobs(a, ledger, marker)
        a.add_job(name="beating", schedule="@yearly", kill_grace="1s",
                  command=f"while true; do date +%s.%N >> {beats}; sleep 0.1; done")  # fmt: skip
        since = now()
        time.sleep(3)
        run_id = c.api("POST", "/api/v1/jobs/beating/trigger", 202)["id"]
        wait_for(beats.exists)
        proxy.black_hole()
        cut_at = time.time()
        lost = wait_for(lambda: run_of(a, run_id)["status"] == "lost", LEASE + 10, "c's run")
        assert lost
        reaped_at = dt.datetime.fromisoformat(run_of(a, run_id)["finished_at"]).timestamp()
        last_beat = float(beats.read_text().split()[-1])
        assert cut_at < last_beat < reaped_at, (cut_at, last_beat, reaped_at)
        assert reaped_at - cut_at >= LEASE  # nobody reaped before c's lease ran out
        assert c.http.get("/readyz").status_code == 503
        assert c.http.get("/healthz").status_code == 200
        proxy.restore()
        wait_for(lambda: state_of(a, "c") == "alive", 20, "c back")
        wait_for(lambda: events_of(postgres_url, "late-result"), 20, "c's late result")
        assert run_of(a, run_id)["status"] == "lost"
        assert "self-fenced" in c.log()
        until = now()
        time.sleep(2)
        for node in (a, b, c):
            assert node.stop() == 0
    findings = check(postgres_url, ledger, TICKERS, "solo", since, until - dt.timedelta(seconds=2))
    findings.assert_clean()
