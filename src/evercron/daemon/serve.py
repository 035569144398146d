"""`evercron serve`: start, serve the API and the schedule, hand over, shut down.

Startup: config (every problem listed, nothing touched), state dir and locks, store and
migrations, runs lost by a dead daemon, config jobs reconciled into the store, the
listening sockets (bound, adopted from systemd, or inherited from the generation before),
then scheduling and serving.

Shutdown (SIGTERM/SIGINT or the API): stop scheduling and accepting, finish in-flight
requests, let running jobs finish within `shutdown_grace` (a second signal ends them at
once), record every result, exit 0.

Hot upgrade (SIGHUP, the API, `evercron upgrade`): start the successor with the sockets
inherited and wait until it serves (see `evercron.daemon.upgrade`); then stop accepting
and scheduling, drain the connections, end live streams, let running jobs finish normally
(kills asked through the successor still reach them), record them and exit 0. A successor
writes shared state only once the old process has let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from evercron import __version__
from evercron.config import Config
from evercron.daemon import collector, init, listeners, logs, state
from evercron.daemon.http import HttpServer
from evercron.daemon.lost import recover_lost_runs
from evercron.daemon.notify import Notifier
from evercron.daemon.signals import SignalRouter
from evercron.daemon.upgrade import Handover, Predecessor, UpgradeBusy, UpgradeError, Upgrader
from evercron.process.descriptors import seal_inherited_descriptors
from evercron.process.procfs import read_stat
from evercron.scheduler import Scheduler
from evercron.server.app import create_app
from evercron.server.context import DaemonContext
from evercron.store import SqliteStore
from evercron.store.worker import StoreWorker

log = logging.getLogger("evercron.daemon")
_PRUNE_EVERY = 3600.0
_KILL_REQUESTS_EVERY = 0.25
_CONTRACT_CHECK_EVERY = 1.0


class ServeError(RuntimeError):
    """The daemon cannot start; the message says why."""


@dataclass(frozen=True)
class ServeOptions:
    """What `evercron serve` was asked to do. `arguments` are the command-line arguments
    after the program name: a hot upgrade starts the new process with the same ones."""

    config: Config
    pid_file: Path | None = None
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Running:
    """The parts of a serving daemon a handover or shutdown acts on."""

    context: DaemonContext
    server: HttpServer
    scheduler: Scheduler
    started: dt.datetime


class _Ending(enum.Enum):
    STOP = "stop"
    HANDOVER = "handover"


def _raise_open_file_limit() -> None:
    """Every running job holds a few pipes and a pidfd here: use the whole hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Daemon:
    """One daemon process (one generation)."""

    def __init__(self, options: ServeOptions, predecessor: Predecessor | None = None) -> None:
        self.options = options
        self.settings = options.config.settings
        self.state_dir = self.settings.state_dir
        self.predecessor = predecessor
        self.generation = predecessor.generation if predecessor else 1
        self.notifier = Notifier.from_environ()
        self._ending: _Ending | None = None
        self._end = asyncio.Event()
        self._hurry = asyncio.Event()
        self._signals = 0
        self._sockets: dict[str, socket.socket] = {}
        self._serve_lock = state.FileLock(self.state_dir / "serve.lock")
        self._upgrader: Upgrader | None = None
        self._running: _Running | None = None
        self._handover: Handover | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        if predecessor is not None and "supervisor" in predecessor.fds:
            self._supervisor: int | None = predecessor.fds["supervisor"]
            os.set_inheritable(self._supervisor, False)
        else:
            self._supervisor = init.take_report_fd()
        stat = read_stat(os.getpid())
        self.owner = f"{os.getpid()}-{stat.start_ticks if stat else 0}"

    async def run(self) -> None:
        """Serve until asked to stop or handed over; raises `ServeError` when it cannot
        start (a successor reports that error to the old process)."""
        settings = self.settings
        token = settings.token or os.environ.get("EVERCRON_TOKEN") or None
        if token is not None and self._viewer_token() == token:
            raise ServeError("the viewer token must differ from the API token")
        _raise_open_file_limit()
        try:
            state.prepare(self.state_dir)
        except state.StateError as error:
            raise ServeError(str(error)) from None
        self._take_serve_lock()
        owner_lock = state.FileLock(self.state_dir / "owners" / f"{self.owner}.lock")
        owner_lock.try_acquire()
        state.write_generation(
            self.state_dir, self.owner, self._generation_info(dt.datetime.now(dt.UTC), "starting")
        )
        try:
            self._sockets = self._listening_sockets()
            for sock in self._sockets.values():
                host = listeners.address_of(sock)[0]
                if token is None and not listeners.is_loopback(host):
                    raise ServeError(
                        f"listening on {host} (not loopback) needs a token: set "
                        "EVERCRON_TOKEN or [daemon] token"
                    )
            await self._serve(token or state.load_or_create_token(self.state_dir))
        finally:
            for sock in self._sockets.values():
                sock.close()
            state.remove_generation(self.state_dir, self.owner)
            owner_lock.release(remove=True)
            self._serve_lock.release()
        log.info("stopped")

    def _viewer_token(self) -> str | None:
        """The read-only token: [daemon] viewer_token, else EVERCRON_VIEWER_TOKEN."""
        return self.settings.viewer_token or os.environ.get("EVERCRON_VIEWER_TOKEN") or None

    async def _serve(self, token: str) -> None:
        # Nothing this process inherited reaches a job, which lets jobs start through
        # posix_spawn (the listening sockets go to a successor through pass_fds).
        seal_inherited_descriptors()
        store = SqliteStore(self.state_dir / "evercron.db")
        try:
            # A successor only expands the schema: the old generation still uses it.
            store.migrate(expand_only=self.predecessor is not None)
        except Exception as error:
            store.close()
            raise ServeError(str(error)) from None
        if self.predecessor is None:
            with store.batch():  # one commit for a thousand config jobs, not one each
                self._recover_and_reconcile(store)
        db = StoreWorker(store)
        scheduler = Scheduler(store, db, self.owner)
        await scheduler.load()
        started = dt.datetime.now(dt.UTC)
        context = DaemonContext(
            store,
            db,
            scheduler,
            token,
            self.state_dir,
            started,
            self.request_stop,
            self.upgrade,
            self.owner,
            self.generation,
            viewer_token=self._viewer_token(),
        )
        tls = self.settings.tls_cert is not None
        server = HttpServer(
            uvicorn.Config(
                create_app(context),
                log_level="warning",
                lifespan="off",
                access_log=False,
                ssl_certfile=self.settings.tls_cert,
                ssl_keyfile=self.settings.tls_key,
                timeout_graceful_shutdown=10,
            )
        )
        url = listeners.url_of(next(iter(self._sockets.values())), tls)
        self._upgrader = Upgrader(
            list(self.options.arguments),
            self.generation,
            self.settings.upgrade_timeout,
            self._inheritance,
            self._successor_environment,
        )
        self._running = _Running(context, server, scheduler, started)
        signals = self._install_signals()
        serving = asyncio.create_task(server.serve(sockets=list(self._sockets.values())))
        scheduling = asyncio.create_task(scheduler.run())
        try:
            await server.wait_serving(serving)
        except Exception as error:
            signals.close()
            scheduler.stop()
            await scheduling
            db.close()
            store.close()
            raise ServeError(f"cannot serve on {url}: {error}") from None
        self._spawn(self._serve_kill_requests(store, db, scheduler))
        if self.predecessor is not None:
            if await self.predecessor.report_ready():
                log.info("generation %d: the old process let go", self.generation)
            for name in await db(self._recover_and_reconcile, store):
                await scheduler.reload(name)
            self._spawn(self._contract_when_alone(store, db))
        self._spawn(self._prune_forever(store, db))
        self._spawn(logs.flush_forever())
        self._publish(url, token, started, "serving")
        if self.predecessor is None:
            self.notifier.ready()
        detail = f"pid {os.getpid()} generation {self.generation} on {url}"
        await db(store.add_event, "start", detail, started)
        log.info(
            "evercron %s (generation %d) serving %s (state dir %s, %d jobs)",
            os.getpid(),
            self.generation,
            url,
            self.state_dir,
            len(scheduler.next_fires),
        )
        collector.settle_after_startup()
        logs.flush_all()  # what was logged so far comes before the lines below
        print(f"evercron listening on {url} (state dir {self.state_dir})", flush=True)
        print(f"web page: {url}/ (`evercron web` prints a link that signs you in)", flush=True)
        try:
            await self._end.wait()
            if self._ending is _Ending.STOP:
                self._shut_down(context, server, scheduler)
            await scheduling
            await serving
            await self._finish_jobs(scheduler, self._ending is _Ending.HANDOVER)
        finally:
            signals.close()
            for task in list(self._tasks):
                task.cancel()
            db.close()  # its thread is done: the store is ours alone again
            store.add_event("stop", f"pid {os.getpid()}", dt.datetime.now(dt.UTC))
            store.close()
            if self._handover is None:  # else they are the successor's now
                with contextlib.suppress(OSError):
                    (self.state_dir / "daemon.json").unlink()
                if self.options.pid_file is not None:
                    with contextlib.suppress(OSError):
                        self.options.pid_file.unlink()

    # -- requests from signals and the API ---------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (as SIGTERM); a starting upgrade is abandoned."""
        if self._upgrader is not None:
            self._upgrader.abort()
        if self._ending is None:
            self._ending = _Ending.STOP
            self._end.set()

    async def upgrade(self) -> Handover:
        """Hand over to a new process started from the code and config on disk; returns
        once it serves. Raises `UpgradeError` (the old process keeps serving) when the new
        one fails, and `UpgradeBusy` while another upgrade is starting."""
        if self._upgrader is None or self._ending is not None:
            raise UpgradeBusy("this daemon process is stopping; it cannot upgrade")
        if not self._upgrader.in_progress and self._upgrader.successor is None:
            self.notifier.reloading()
        try:
            handover = await self._upgrader.start_successor()
        except UpgradeBusy:
            raise  # the upgrade under way reports its own outcome
        except UpgradeError as error:
            if self._ending is None:
                log.error("upgrade failed, still serving: %s", error)
                self.notifier.ready()
            await self._recover_after_failed_successor()
            raise
        if self._ending is not None:  # stopping meanwhile: the successor is on its own
            log.warning("upgrade finished while stopping; pid %d serves", handover.pid)
        self.notifier.ready(handover.pid)
        log.info(
            "upgrade: generation %d (pid %d) serves after %.2fs; draining",
            handover.generation,
            handover.pid,
            handover.seconds,
        )
        self._handover = handover
        # The successor holds the serve lock through the descriptor it inherited; drop
        # ours, so that if it dies while this process drains, a restart can take over.
        self._serve_lock.release()
        if self._ending is None:
            self._ending = _Ending.HANDOVER
            assert self._running is not None
            self._let_go(self._running)
        self._end.set()
        return handover

    async def _recover_after_failed_successor(self) -> None:
        """A killed successor may have started firings before it was ready: mark its runs
        lost and end what they left running, as a restart would."""
        if self._running is None:
            return
        context = self._running.context
        for run_id in await context.db(recover_lost_runs, context.store, self.state_dir):
            log.warning("run %d of the failed new process marked lost", run_id)

    def _install_signals(self) -> SignalRouter:
        router = SignalRouter(asyncio.get_running_loop())
        for signum in (signal.SIGTERM, signal.SIGINT):
            router.route(signum, self._on_stop_signal)
        router.route(signal.SIGHUP, self._on_hangup)
        return router

    def _on_stop_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1 and self._ending is not _Ending.HANDOVER:
            log.info("%s: graceful shutdown", name)
            self.request_stop()
        else:
            log.info("%s: ending running jobs (after shutdown_grace when draining)", name)
            self._hurry.set()

    def _on_hangup(self, _signum: int) -> None:
        log.info("SIGHUP: hot upgrade")
        self._spawn(self._upgrade_logged())

    async def _upgrade_logged(self) -> None:
        with contextlib.suppress(UpgradeError):  # logged by upgrade()
            await self.upgrade()

    # -- ending ------------------------------------------------------------------------

    def _shut_down(self, context: DaemonContext, server: HttpServer, scheduler: Scheduler) -> None:
        log.info("shutting down: no new firings or connections")
        self.notifier.stopping()
        scheduler.stop()
        scheduler.live.close_all()
        context.draining = True
        server.should_exit = True

    def _let_go(self, running: _Running) -> None:
        """The handover, from the old side: stop accepting and claiming, tell the
        successor it may write shared state, end live streams, drain."""
        assert self._upgrader is not None
        running.context.draining = True
        running.server.drain()
        running.scheduler.hand_over()
        self._upgrader.acknowledge()
        running.scheduler.live.close_all()
        state.write_generation(
            self.state_dir, self.owner, self._generation_info(running.started, "draining")
        )

    async def _finish_jobs(self, scheduler: Scheduler, handed_over: bool) -> None:
        """Let running jobs finish: after a handover for as long as they take (with their
        claimed firings and pending retries), else within shutdown_grace. A stop signal
        while draining limits what is left to shutdown_grace."""
        launcher = scheduler.launcher
        hurry = asyncio.create_task(self._hurry.wait())
        try:
            if handed_over:
                if launcher.running:
                    log.info("draining: %d job(s) still running", len(launcher.running))
                idle = asyncio.create_task(scheduler.wait_idle())
                await asyncio.wait([idle, hurry], return_when=asyncio.FIRST_COMPLETED)
                if idle.done():
                    return
                idle.cancel()
                scheduler.stop()  # no more retries either
                hurry.cancel()
                self._hurry.clear()  # a further signal ends the jobs at once
                hurry = asyncio.create_task(self._hurry.wait())
            if not launcher.running:
                return
            grace = self.settings.shutdown_grace
            log.info("waiting up to %ss for %d running job(s)", grace, len(launcher.running))
            waiting = asyncio.create_task(launcher.wait_all(grace))
            await asyncio.wait([waiting, hurry], return_when=asyncio.FIRST_COMPLETED)
            if not (waiting.done() and waiting.result()):
                waiting.cancel()
                log.info("ending %d running job(s)", len(launcher.running))
                await launcher.kill_all()
        finally:
            hurry.cancel()

    # -- what a successor inherits -----------------------------------------------------

    def _take_serve_lock(self) -> None:
        inherited = self.predecessor.fds.get("serve-lock") if self.predecessor else None
        if inherited is not None:
            self._serve_lock.adopt(inherited)
            return
        if not self._serve_lock.try_acquire():
            running = state.read_address(self.state_dir) or {}
            raise ServeError(
                f"another evercron (pid {running.get('pid', '?')}) is already "
                f"serving state dir {self.state_dir}"
            )

    def _listening_sockets(self) -> dict[str, socket.socket]:
        try:
            if self.predecessor is not None:
                found = {
                    name.removeprefix("listen:"): listeners.adopt(fd, "upgrade")
                    for name, fd in self.predecessor.fds.items()
                    if name.startswith("listen:")
                }
                if found:
                    return found
            activated = listeners.from_systemd()
            if activated:
                log.info("socket activation: listening on %s", ", ".join(activated))
                return activated
            return {"api": listeners.bind(self.settings.host, self.settings.port)}
        except listeners.ListenError as error:
            raise ServeError(str(error)) from None

    def _inheritance(self) -> dict[str, int]:
        fds = {f"listen:{name}": sock.fileno() for name, sock in self._sockets.items()}
        fds["serve-lock"] = self._serve_lock.fileno()
        if self._supervisor is not None:
            fds["supervisor"] = self._supervisor
        return fds

    def _successor_environment(self) -> dict[str, str]:
        address = self.notifier.address
        return {"NOTIFY_SOCKET": address} if address else {}

    # -- shared state ------------------------------------------------------------------

    def _recover_and_reconcile(self, store: SqliteStore) -> list[str]:
        """Mark runs of dead daemons lost and make the store's config jobs exactly the
        config's; the names of the jobs that changed."""
        for run_id in recover_lost_runs(store, self.state_dir):
            store.add_event("lost", f"run {run_id}", dt.datetime.now(dt.UTC))
        return self._reconcile(store)

    def _reconcile(self, store: SqliteStore) -> list[str]:
        """Make the store's config-file jobs exactly those of the current config; the
        names of the jobs added, changed or removed."""
        now = dt.datetime.now(dt.UTC)
        changed = []
        wanted = {job.name: job for job in self.options.config.jobs}
        for stored in store.list_jobs():
            if stored.job.source != "api" and stored.job.name not in wanted:
                store.delete_job(stored.job.name)
                changed.append(stored.job.name)
        for job in wanted.values():
            existing = store.get_job(job.name)
            if existing is not None and existing.job.source == "api":
                log.warning("config job %s replaces the API job of the same name", job.name)
            if existing is None or existing.job != job:
                store.put_job(job, now)
                changed.append(job.name)
        return changed

    def _publish(self, url: str, token: str, started: dt.datetime, role: str) -> None:
        state.write_address(self.state_dir, url, token)
        if self.options.pid_file is not None:
            state.write_pid_file(self.options.pid_file)
        state.write_generation(self.state_dir, self.owner, self._generation_info(started, role))
        init.report_serving(self._supervisor)

    def _generation_info(self, started: dt.datetime, role: str) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "generation": self.generation,
            "started_at": started.isoformat(),
            "role": role,
            "version": __version__,
        }

    # -- background work ---------------------------------------------------------------

    async def _serve_kill_requests(
        self, store: SqliteStore, db: StoreWorker, scheduler: Scheduler
    ) -> None:
        """Kill runs of this process that another one (the successor) was asked to kill."""
        done: set[int] = set()
        while True:
            await asyncio.sleep(_KILL_REQUESTS_EVERY)
            if not scheduler.launcher.running:
                done.clear()
                continue
            for run_id in await db(store.kill_requests, self.owner):
                if run_id not in done and await scheduler.launcher.kill(run_id):
                    log.info("run %d: killed as asked through another process", run_id)
                    done.add(run_id)

    async def _contract_when_alone(self, store: SqliteStore, db: StoreWorker) -> None:
        """Apply contract migrations once no older generation uses the store."""
        while set(await asyncio.to_thread(state.living_generations, self.state_dir)) - {self.owner}:
            await asyncio.sleep(_CONTRACT_CHECK_EVERY)
        await db(store.migrate)

    async def _prune_forever(self, store: SqliteStore, db: StoreWorker) -> None:
        """Apply the retention settings now and every hour."""
        while True:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.settings.retention_days)
            removed = await db(store.prune, self.settings.retention_runs, cutoff)
            if removed:
                log.info("retention: removed %d old run(s) and their output", removed)
            await asyncio.sleep(_PRUNE_EVERY)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def command_arguments() -> tuple[str, ...]:
    """This process's arguments after the program name (for the successor)."""
    return tuple(sys.argv[1:])
