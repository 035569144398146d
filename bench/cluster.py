"""Several nodes on one PostgreSQL, side by side with one node and with procrastinate.

    .venv/bin/python bench/cluster.py [--seconds 60] [--big-seconds 20] [--json FILE]
                                      [--only NAME]    (BENCH_KEEP=1 keeps the nodes' files)

Starts its own PostgreSQL server (Debian's binaries, as the tests do) and runs, one after
the other on this machine, N jobs firing every second (concurrency allow, each command
appending its firing to a ledger file):

- sqlite-1: one node on SQLite (today's embedded store) - the reference p99;
- pg-1: one node on PostgreSQL;
- pg-3: three nodes on one PostgreSQL database;
- sqlite-1 N=1000 and pg-3 N=1000: ten times the jobs, for fewer seconds, with commands
  that need no shell (CPU bounds how many commands this machine starts a second);
- pg-3 kill: three nodes, one SIGKILLed mid-window (lease 5 s): how soon its runs are
  `lost`, and whether any later firing was missed;
- procrastinate: the peer, 3 worker processes, the same N periodic tasks every second.

For each: expected firings, fired (in the ledger), missing, doubled, start latency p50
and p99 (evercron: when the command was let run, as recorded; procrastinate: when the
task function began), each node's share, and CPU seconds of the nodes and of PostgreSQL.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.postgres import PostgresServer  # noqa: E402 - the tests' throwaway server

LEASE = "5s"
WARMUP = 5.0
WARMUP_BIG = 20.0
"""Before the big runs' window: a thousand jobs applied at once start late everywhere
(every node learns them, plans them and catches up), and the goal is steady state."""
TICK = 'echo "$EVERCRON_JOB $EVERCRON_SCHEDULED_AT $EVERCRON_NODE" >> "{ledger}"'
TERSE = "echo {job} >> {ledger}"
"""The big run's command: no shell (literal words and a redirection start directly, see
docs/BENCHMARKS.md session 8); its ledger line names the job only, so exactly-once is
checked per job: as many lines as runs that started, and none more."""


@dataclass
class Outcome:
    """One scenario's figures."""

    name: str
    jobs: int
    seconds: float
    expected: int = 0
    fired: int = 0
    missing: int = 0
    doubled: int = 0
    skipped_or_lost: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    share: dict[str, int] = field(default_factory=dict)
    cpu_nodes_s: float = 0.0
    cpu_postgres_s: float = 0.0
    notes: str = ""


# -- processes ------------------------------------------------------------------------


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU time of a process (and of its reaped children) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu(server: PostgresServer) -> float:
    """The server's CPU: the postmaster, its ended backends, and its live ones."""
    postmaster = server._process.pid if server._process else 0
    total = cpu_seconds(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == postmaster:
                total += cpu_seconds(int(entry.name))
    return total


class Node:
    """One `evercron serve` process."""

    def __init__(self, name: str, base: Path, url: str | None) -> None:
        self.name = name
        self.state = base / name
        self.state.mkdir(parents=True)
        config = base / f"{name}.toml"
        lines = ["[daemon]", f'node_name = "{name}"', f'node_lease = "{LEASE}"']
        config.write_text("\n".join(lines) + "\n")
        self.log = base / f"{name}.log"
        env = {**os.environ, "EVERCRON_DATABASE_URL": url or ""}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evercron",
                "serve",
                "--state-dir",
                str(self.state),
                "--listen",
                "127.0.0.1:0",
                "--config",
                str(config),
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while "evercron listening on" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {name} did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.address = json.loads((self.state / "daemon.json").read_text())

    def apply(self, jobs: int, ledger: Path, terse: bool) -> None:
        """Give the cluster its jobs through this node, once every node serves (so that
        no node carries them all while the others start)."""
        line = TERSE if terse else TICK
        body = {
            "jobs": [
                {"name": f"tick-{n}", "schedule": "* * * * * * *", "concurrency": "allow",
                 "kill_grace": "1s", "source": "bench",
                 "command": line.format(job=f"tick-{n}", ledger=ledger)}
                for n in range(jobs)
            ]
        }  # fmt: skip
        request = urllib.request.Request(
            self.address["url"] + "/api/v1/apply",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.address['token']}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        for attempt in range(5):
            try:
                with urllib.request.urlopen(request, timeout=300) as answer:
                    answer.read()
                return
            except urllib.error.HTTPError as error:  # 503: the database was too slow
                if error.code != 503 or attempt == 4:
                    raise RuntimeError(f"apply: {error.read().decode()}") from None
                time.sleep(2)

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- evercron scenarios ---------------------------------------------------------------


def evercron_run(
    server: PostgresServer,
    name: str,
    nodes: int,
    jobs: int,
    seconds: float,
    postgres: bool,
    kill_at: float | None = None,
) -> Outcome:
    base = Path(tempfile.mkdtemp(prefix=f"bench-{name.replace(' ', '-')}-"))
    ledger = base / "ledger"
    database = server.database() if postgres else None
    url = server.url(database) if database else None
    terse = jobs > 100
    started = [Node(f"n{i}", base, url) for i in range(nodes)]
    outcome = Outcome(name, jobs, seconds)
    killed_at: float | None = None
    try:
        started[0].apply(jobs, ledger, terse)
        time.sleep(WARMUP_BIG if terse else WARMUP)
        since = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        until = since + dt.timedelta(seconds=seconds)
        cpu0 = sum(n.cpu() for n in started), postgres_cpu(server)
        if kill_at is not None:
            time.sleep(max(0.0, since.timestamp() + kill_at - time.time()))
            started[-1].process.kill()
            killed_at = time.time()
        time.sleep(max(0.0, until.timestamp() - time.time() + 2))
        outcome.cpu_nodes_s = sum(n.cpu() for n in started) - cpu0[0]
        outcome.cpu_postgres_s = postgres_cpu(server) - cpu0[1] if postgres else 0.0
    finally:
        for node in started:
            node.stop()
    runs = _runs(url, started[0].state / "evercron.db", since, until)
    if terse:
        _score_counts(outcome, runs, ledger, since, until)
    else:
        _score(outcome, runs, ledger, since, until, killed_at)
    if database:
        server.drop(database)
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(base, ignore_errors=True)
    return outcome


def _runs(
    url: str | None, sqlite_path: Path, since: dt.datetime, until: dt.datetime
) -> list[tuple[str, dt.datetime, str, dt.datetime | None, dt.datetime | None, str | None]]:
    """(job, scheduled_at, status, started_at, finished_at, node) of every run."""
    if url:
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT job, scheduled_at, status, started_at, finished_at, node FROM runs"
            ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
    with sqlite3.connect(sqlite_path) as db:
        rows = db.execute(
            "SELECT job, scheduled_at, status, started_at, finished_at, node FROM runs"
        ).fetchall()
    found = []
    for job, at, status, began, ended, node in rows:
        moment = _time(at)
        if moment is not None:
            found.append((job, moment, status, _time(began), _time(ended), node))
    return found


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _score(
    outcome: Outcome,
    runs: list,  # type: ignore[type-arg]
    ledger: Path,
    since: dt.datetime,
    until: dt.datetime,
    killed_at: float | None,
) -> None:
    runs = [r for r in runs if since <= r[1] < until]
    seen: collections.Counter[tuple[str, dt.datetime]] = collections.Counter()
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        job, at, _node = line.split()
        moment = dt.datetime.fromisoformat(at)
        if since <= moment < until:
            seen[(job, moment)] += 1
    outcome.expected = outcome.jobs * int((until - since).total_seconds())
    outcome.fired = len(seen)
    outcome.doubled = sum(1 for count in seen.values() if count > 1)
    outcome.missing = outcome.expected - outcome.fired
    outcome.skipped_or_lost = sum(1 for r in runs if r[2] in ("skipped", "lost"))
    lags = sorted((r[3] - r[1]).total_seconds() for r in runs if r[3] is not None)
    if lags:
        outcome.p50_ms = round(statistics.median(lags) * 1000, 1)
        outcome.p99_ms = round(lags[int(len(lags) * 0.99) - 1] * 1000, 1)
    outcome.share = dict(collections.Counter(r[5] or "-" for r in runs if r[2] != "skipped"))
    if killed_at is not None:
        lost = [r for r in runs if r[2] == "lost"]
        last_lost = max((r[4].timestamp() for r in lost if r[4]), default=killed_at)
        after = {(job, moment) for job, moment, *_ in runs if moment.timestamp() > killed_at + 1.5}
        missed_after = sum(
            1
            for n in range(outcome.jobs)
            for s in range(int((until - since).total_seconds()))
            if (moment := since + dt.timedelta(seconds=s)).timestamp() > killed_at + 1.5
            and seen[(f"tick-{n}", moment)] == 0
        )
        outcome.notes = (
            f"{len(lost)} runs of the killed node lost {last_lost - killed_at:.1f}s after the "
            f"kill (lease {LEASE}); {missed_after} later firings missed "
            f"({len(after)} claimed after the kill)"
        )


def _score_counts(
    outcome: Outcome,
    runs: list,
    ledger: Path,
    since: dt.datetime,  # type: ignore[type-arg]
    until: dt.datetime,
) -> None:
    """The terse ledger: per job, lines (executions) against runs that started."""
    lines = collections.Counter(ledger.read_text().split() if ledger.exists() else [])
    window = [r for r in runs if since <= r[1] < until]
    ran = collections.Counter(r[0] for r in window if r[3] is not None)
    everything = collections.Counter(r[0] for r in runs if r[3] is not None)
    outcome.expected = outcome.jobs * int((until - since).total_seconds())
    outcome.fired = sum(ran.values())
    outcome.missing = outcome.expected - outcome.fired
    outcome.doubled = sum(max(0, lines[job] - count) for job, count in everything.items())
    outcome.skipped_or_lost = sum(1 for r in window if r[2] in ("skipped", "lost"))
    lags = sorted((r[3] - r[1]).total_seconds() for r in window if r[3] is not None)
    if lags:
        outcome.p50_ms = round(statistics.median(lags) * 1000, 1)
        outcome.p99_ms = round(lags[int(len(lags) * 0.99) - 1] * 1000, 1)
    outcome.share = dict(collections.Counter(r[5] or "-" for r in window if r[3] is not None))
    outcome.notes = "shell-free commands; doubled = ledger lines beyond the runs started"


# -- the peer -------------------------------------------------------------------------


def procrastinate_run(server: PostgresServer, jobs: int, seconds: float) -> Outcome:
    base = Path(tempfile.mkdtemp(prefix="bench-procrastinate-"))
    ledger = base / "ledger"
    database = server.database()
    env = {
        **os.environ,
        "PEER_DATABASE_URL": server.url(database),
        "PEER_LEDGER": str(ledger),
        "PEER_JOBS": str(jobs),
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "procrastinate",
            "--app=bench.procrastinate_peer.app",
            "schema",
            "--apply",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "procrastinate",
                "--app=bench.procrastinate_peer.app",
                "worker",
                "--queues=ticks",
                "--concurrency=10",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(base / f"worker-{n}.log").open("w"),
        )
        for n in range(3)
    ]
    outcome = Outcome("procrastinate-3", jobs, seconds)
    try:
        time.sleep(WARMUP)
        since = int(time.time()) + 1
        until = since + int(seconds)
        cpu0 = sum(cpu_seconds(w.pid) for w in workers), postgres_cpu(server)
        time.sleep(until - time.time() + 3)
        outcome.cpu_nodes_s = sum(cpu_seconds(w.pid) for w in workers) - cpu0[0]
        outcome.cpu_postgres_s = postgres_cpu(server) - cpu0[1]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    lags, share = [], collections.Counter()
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        name, stamp, began, pid = line.split()
        if since <= int(stamp) < until:
            seen[(name, int(stamp))] += 1
            lags.append(float(began) - int(stamp))
            share[pid] += 1
    outcome.expected = jobs * int(seconds)
    outcome.fired = len(seen)
    outcome.doubled = sum(count - 1 for count in seen.values() if count > 1)
    outcome.missing = outcome.expected - outcome.fired
    lags.sort()
    if lags:
        outcome.p50_ms = round(statistics.median(lags) * 1000, 1)
        outcome.p99_ms = round(lags[int(len(lags) * 0.99) - 1] * 1000, 1)
    outcome.share = dict(share)
    outcome.notes = "doubled = extra executions of a firing"
    server.drop(database)
    shutil.rmtree(base, ignore_errors=True)
    return outcome


# -- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--big", type=int, default=1000, help="jobs of the big run")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--big-seconds", type=float, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    args = parser.parse_args()
    server = PostgresServer.start()
    outcomes = []
    try:
        big = f"pg-3 N={args.big}"
        plan: list[tuple[str, Callable[[], Outcome]]] = [
            (
                "sqlite-1",
                lambda: evercron_run(server, "sqlite-1", 1, args.jobs, args.seconds, False),
            ),
            ("pg-1", lambda: evercron_run(server, "pg-1", 1, args.jobs, args.seconds, True)),
            ("pg-3", lambda: evercron_run(server, "pg-3", 3, args.jobs, args.seconds, True)),
            (
                f"sqlite-1 N={args.big}",
                lambda: evercron_run(
                    server, f"sqlite-1 N={args.big}", 1, args.big, args.big_seconds, False
                ),
            ),
            (big, lambda: evercron_run(server, big, 3, args.big, args.big_seconds, True)),
            (
                "pg-3 kill",
                lambda: evercron_run(
                    server, "pg-3 kill", 3, args.jobs, args.seconds, True, kill_at=args.seconds / 3
                ),
            ),
            ("procrastinate-3", lambda: procrastinate_run(server, args.jobs, args.seconds)),
        ]
        for name, step in plan:
            if args.only and args.only not in name:
                continue
            outcome = step()
            outcomes.append(outcome)
            print(json.dumps(asdict(outcome)), flush=True)
    finally:
        server.stop()
    reference = next((o.p99_ms for o in outcomes if o.name == "sqlite-1"), 0.0)
    print(
        f"\n{'scenario':<18}{'N':>6}{'expected':>10}{'fired':>8}{'missing':>9}{'doubled':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'p99/sqlite':>11}{'CPU nodes':>11}{'CPU pg':>8}"
    )
    for o in outcomes:
        ratio = o.p99_ms / reference if reference else float("nan")
        print(
            f"{o.name:<18}{o.jobs:>6}{o.expected:>10}{o.fired:>8}{o.missing:>9}{o.doubled:>9}"
            f"{o.p50_ms:>9}{o.p99_ms:>9}{ratio:>11.2f}{o.cpu_nodes_s:>11.1f}"
            f"{o.cpu_postgres_s:>8.1f}"
        )
        if o.share or o.notes:
            print(f"{'':<18}share {o.share} {o.notes}")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))


if __name__ == "__main__":
    main()
