"""`evercron serve`: start, serve the API and the schedule, shut down gracefully.

Startup: config (every problem listed, nothing touched), state dir and locks, store and
migrations, runs lost by a dead daemon, config jobs reconciled into the store, the
listening socket bound, then scheduling and serving. Shutdown (SIGTERM/SIGINT or the
API): stop scheduling and accepting, finish in-flight requests, let running jobs finish
within `shutdown_grace` (a second signal ends them at once), record every result, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import resource
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from evercron.config import Config
from evercron.daemon import state
from evercron.daemon.lost import recover_lost_runs
from evercron.process.procfs import read_stat
from evercron.scheduler import Scheduler
from evercron.server.app import create_app
from evercron.server.context import DaemonContext
from evercron.store import SqliteStore
from evercron.store.worker import StoreWorker

log = logging.getLogger("evercron.daemon")
_PRUNE_EVERY = 3600.0


class ServeError(RuntimeError):
    """The daemon cannot start; the message says why."""


@dataclass(frozen=True)
class ServeOptions:
    """What `evercron serve` was asked to do."""

    config: Config
    pid_file: Path | None = None


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def _raise_open_file_limit() -> None:
    """Every running job holds a few pipes and a pidfd here: use the whole hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (IPv6 when the host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from None


class Daemon:
    """One serving daemon process."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.settings = options.config.settings
        self.state_dir = self.settings.state_dir
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        self._signals = 0

    async def run(self) -> None:
        """Serve until asked to stop; raises `ServeError` when it cannot start."""
        settings = self.settings
        token = settings.token or os.environ.get("EVERCRON_TOKEN") or None
        if token is None and not is_loopback(settings.host):
            raise ServeError(
                f"listening on {settings.host} (not loopback) needs a token: set "
                "EVERCRON_TOKEN or [daemon] token"
            )
        _raise_open_file_limit()
        try:
            state.prepare(self.state_dir)
        except state.StateError as error:
            raise ServeError(str(error)) from None
        serve_lock = state.FileLock(self.state_dir / "serve.lock")
        if not serve_lock.try_acquire():
            running = state.read_address(self.state_dir) or {}
            raise ServeError(
                f"another evercron (pid {running.get('pid', '?')}) is already "
                f"serving state dir {self.state_dir}"
            )
        stat = read_stat(os.getpid())
        owner = f"{os.getpid()}-{stat.start_ticks if stat else 0}"
        owner_lock = state.FileLock(self.state_dir / "owners" / f"{owner}.lock")
        owner_lock.try_acquire()
        token = token or state.load_or_create_token(self.state_dir)
        store = SqliteStore(self.state_dir / "evercron.db")
        store.migrate()
        for run_id in recover_lost_runs(store, self.state_dir):
            store.add_event("lost", f"run {run_id}", dt.datetime.now(dt.UTC))
        self._reconcile(store)
        listener = bind(settings.host, settings.port)
        db = StoreWorker(store)
        scheduler = Scheduler(store, db, owner)
        await scheduler.load()
        started = dt.datetime.now(dt.UTC)
        context = DaemonContext(
            store, db, scheduler, token, self.state_dir, started, self.request_stop
        )
        server = _Server(
            uvicorn.Config(
                create_app(context),
                log_level="warning",
                lifespan="off",
                access_log=False,
                ssl_certfile=settings.tls_cert,
                ssl_keyfile=settings.tls_key,
                timeout_graceful_shutdown=10,
            )
        )
        host, port = listener.getsockname()[:2]
        scheme = "https" if settings.tls_cert else "http"
        url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
        self._install_signals()
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        scheduling = asyncio.create_task(scheduler.run())
        pruning = asyncio.create_task(self._prune_forever(store, db))
        state.write_address(self.state_dir, url, token)
        if self.options.pid_file is not None:
            state.write_pid_file(self.options.pid_file)
        store.add_event("start", f"pid {os.getpid()} listening on {url}", started)
        log.info(
            "evercron %s serving %s (state dir %s, %d jobs)",
            os.getpid(),
            url,
            self.state_dir,
            len(scheduler.next_fires),
        )
        print(f"evercron listening on {url} (state dir {self.state_dir})", flush=True)
        try:
            await self._stop.wait()
            log.info("shutting down: no new firings or connections")
            scheduler.stop()
            pruning.cancel()
            scheduler.live.close_all()
            server.should_exit = True
            await scheduling
            await serving
            await self._finish_jobs(scheduler)
        finally:
            store.add_event("stop", f"pid {os.getpid()}", dt.datetime.now(dt.UTC))
            db.close()
            store.close()
            with contextlib.suppress(OSError):
                (self.state_dir / "daemon.json").unlink()
            if self.options.pid_file is not None:
                with contextlib.suppress(OSError):
                    self.options.pid_file.unlink()
            owner_lock.release(remove=True)
            serve_lock.release()
        log.info("stopped")

    def request_stop(self) -> None:
        """Begin a graceful shutdown (as SIGTERM)."""
        self._stop.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    def _on_stop_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s: graceful shutdown", signal.Signals(signum).name)
            self._stop.set()
        else:
            log.info("%s again: ending running jobs now", signal.Signals(signum).name)
            self._hurry.set()

    def _on_hangup(self) -> None:
        log.warning("SIGHUP: hot upgrade is not implemented in this version; ignored")

    async def _finish_jobs(self, scheduler: Scheduler) -> None:
        launcher = scheduler.launcher
        if not launcher.running:
            return
        grace = self.settings.shutdown_grace
        log.info("waiting up to %ss for %d running job(s)", grace, len(launcher.running))
        waiting = asyncio.create_task(launcher.wait_all(grace))
        hurry = asyncio.create_task(self._hurry.wait())
        await asyncio.wait([waiting, hurry], return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        if not (waiting.done() and waiting.result()):
            waiting.cancel()
            log.info("ending %d running job(s)", len(launcher.running))
            await launcher.kill_all()

    async def _prune_forever(self, store: SqliteStore, db: StoreWorker) -> None:
        """Apply the retention settings now and every hour."""
        while True:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.settings.retention_days)
            removed = await db(store.prune, self.settings.retention_runs, cutoff)
            if removed:
                log.info("retention: removed %d old run(s) and their output", removed)
            await asyncio.sleep(_PRUNE_EVERY)

    def _reconcile(self, store: SqliteStore) -> None:
        """Make the store's config-file jobs exactly those of the current config."""
        now = dt.datetime.now(dt.UTC)
        wanted = {job.name: job for job in self.options.config.jobs}
        for stored in store.list_jobs():
            if stored.job.source != "api" and stored.job.name not in wanted:
                store.delete_job(stored.job.name)
        for job in wanted.values():
            existing = store.get_job(job.name)
            if existing is not None and existing.job.source == "api":
                log.warning("config job %s replaces the API job of the same name", job.name)
            if existing is None or existing.job != job:
                store.put_job(job, now)
