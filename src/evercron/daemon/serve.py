"""`evercron serve`: one daemon process (one generation), as a small state machine.

    starting --> serving --> stopping --> stopped
        |           |                        ^
        |           +--> draining -----------+
        +------------------------------------+  (start-up failed)

- starting: config (checked before we get here), state dir and locks, the store and its
  migrations, joining the cluster as a node (`evercron.daemon.membership`; with SQLite a
  cluster of one), runs lost by a dead daemon, config jobs reconciled into the store, the
  listening sockets (bound, adopted from systemd, or inherited from the generation
  before), the scheduler's plan. A successor touches shared state only once the old
  process has let go.
- serving: the API and the schedule.
- stopping (SIGTERM/SIGINT, the API): stop scheduling and accepting, finish in-flight
  requests, let running jobs finish within `shutdown_grace` (a second signal ends them at
  once), record every result.
- draining (after a hot upgrade handed over: SIGHUP, the API, `evercron upgrade`): stop
  accepting and claiming, drain connections, end live streams, let running jobs finish
  normally (kills asked through the successor still reach them) and record them.
- stopped: everything recorded and closed (a node that stopped, not handed over, leaves
  the cluster once its runs ended); the process exits 0.

Each signal has one handler method (`_handle_<signal>`), as in gunicorn's arbiter.
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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from evercron import __version__
from evercron.config import Config
from evercron.daemon import chores, collector, init, listeners, logs, state, tokens
from evercron.daemon.connections import ACCEPT_BACKLOG, ConnectionGuard
from evercron.daemon.control import Control
from evercron.daemon.http import HttpServer
from evercron.daemon.lost import recover_lost_runs
from evercron.daemon.membership import Membership
from evercron.daemon.notify import Notifier
from evercron.daemon.operations import Operations
from evercron.daemon.signals import SignalRouter
from evercron.daemon.upgrade import Handover, Predecessor, UpgradeBusy, UpgradeError, Upgrader
from evercron.logfields import about
from evercron.metrics import Scraper
from evercron.process.cgroup import limit_support
from evercron.process.descriptors import seal_inherited_descriptors
from evercron.process.procfs import read_stat
from evercron.scheduler import Scheduler
from evercron.scheduler.placement import Cluster
from evercron.scheduler.slots import reserved_descriptors
from evercron.server.app import create_app
from evercron.server.context import ApiContext, GenerationInfo
from evercron.store import NodeInfo, RetryPolicy, Store, open_store

log = logging.getLogger("evercron.daemon")


class ServeError(RuntimeError):
    """The daemon cannot start; the message says why."""


class Phase(enum.Enum):
    """Where a daemon process is in its life (see the module text)."""

    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


_NEXT: dict[Phase, set[Phase]] = {
    Phase.STARTING: {Phase.SERVING, Phase.STOPPED},
    Phase.SERVING: {Phase.DRAINING, Phase.STOPPING},
    Phase.DRAINING: {Phase.STOPPED},
    Phase.STOPPING: {Phase.STOPPED},
    Phase.STOPPED: set(),
}


@dataclass(frozen=True)
class ServeOptions:
    """What `evercron serve` was asked to do. `arguments` are the command-line arguments
    after the program name: a hot upgrade starts the new process with the same ones."""

    config: Config
    pid_file: Path | None = None
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Serving:
    """The parts of a serving daemon that draining and stopping act on."""

    store: Store
    scheduler: Scheduler
    server: HttpServer
    control: Control
    started: dt.datetime
    operations: Operations
    scraper: Scraper
    membership: Membership


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
        self.phase = Phase.STARTING
        self.notifier = Notifier.from_environ()
        self._ended = asyncio.Event()  # left serving (to draining or stopping)
        self._hurry = asyncio.Event()  # a further stop signal: end running jobs now
        self._stop_signals = 0
        self._sockets: dict[str, socket.socket] = {}
        self._serve_lock = state.FileLock(self.state_dir / "serve.lock")
        self._upgrader: Upgrader | None = None
        self._serving: _Serving | None = None
        self._handover: Handover | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: asyncio.Task[None] | None = None
        self._schedule: asyncio.Task[None] | None = None
        self._signals: SignalRouter | None = None
        if predecessor is not None and "supervisor" in predecessor.fds:
            self._supervisor: int | None = predecessor.fds["supervisor"]
            os.set_inheritable(self._supervisor, False)
        else:
            self._supervisor = init.take_report_fd()
        stat = read_stat(os.getpid())
        self.owner = f"{os.getpid()}-{stat.start_ticks if stat else 0}"

    def _enter(self, phase: Phase) -> None:
        if phase not in _NEXT[self.phase]:
            raise RuntimeError(f"daemon phase {self.phase.value} cannot go to {phase.value}")
        self.phase = phase

    # -- the life of the process -------------------------------------------------------

    async def run(self) -> None:
        """Serve until asked to stop or handed over; raises `ServeError` when it cannot
        start (a successor reports that error to the old process)."""
        token = tokens.api_token(self.settings.token)
        viewer = tokens.viewer_token(self.settings.viewer_token)
        try:
            tokens.check_tokens(token, viewer, ())
        except tokens.TokenError as error:
            raise ServeError(str(error)) from None
        _raise_open_file_limit()
        try:
            state.prepare(self.state_dir)
        except state.StateError as error:
            raise ServeError(str(error)) from None
        self._take_serve_lock()
        owner_lock = state.FileLock(self.state_dir / "owners" / f"{self.owner}.lock")
        owner_lock.try_acquire()
        now = dt.datetime.now(dt.UTC)
        state.write_generation(self.state_dir, self.owner, self._generation_info(now))
        try:
            self._sockets = self._open_doors(token, viewer)
            await self._live(token or state.load_or_create_token(self.state_dir))
        finally:
            for sock in self._sockets.values():
                sock.close()
            state.remove_generation(self.state_dir, self.owner)
            owner_lock.release(remove=True)
            self._serve_lock.release()
            self.phase = Phase.STOPPED
        log.info("stopped")

    async def _live(self, token: str) -> None:
        serving = self._serving = await self._start(token)
        try:
            await self._serve(serving, token)
            await self._ended.wait()
            await self._finish(serving)
        finally:
            await self._tear_down(serving)

    async def _start(self, token: str) -> _Serving:
        """The starting phase, up to the first accepted connection."""
        # Nothing this process inherited reaches a job, which lets jobs start through
        # posix_spawn (the listening sockets go to a successor through pass_fds).
        seal_inherited_descriptors()
        info = self._node_info()
        store = open_store(self.state_dir, self.settings.database_url, info.name)
        operations = Operations.of(self.options.config, store, self.owner, info.name)
        try:
            # A successor only expands the schema: the old generation still uses it.
            await store.migrate(expand_only=self.predecessor is not None)
            cluster = Cluster(info)
            membership = Membership(store, info, cluster)
            await membership.join()
            await operations.start(store)
            if self.predecessor is None:
                await self._recover_and_reconcile(store, operations)
            scheduler = Scheduler(
                store,
                self.owner,
                retry=RetryPolicy(self.settings.store_retry_interval),
                owner_alive=lambda owner: state.owner_is_alive(self.state_dir, owner),
                cluster=cluster,
                observer=operations.observer,
            )
            await scheduler.load()
            await self._log_limits(store, scheduler)
        except Exception as error:
            await store.close()
            raise ServeError(str(error)) from None
        started = dt.datetime.now(dt.UTC)
        control = Control(
            store,
            self.state_dir,
            self.owner,
            self._me,
            self.request_stop,
            self.upgrade,
            readiness=self._readiness,
        )
        scraper = Scraper(store, scheduler, operations.counts, started)
        context = ApiContext(
            store,
            scheduler,
            scheduler.live,
            control,
            token,
            started,
            str(self.state_dir),
            viewer_token=tokens.viewer_token(self.settings.viewer_token),
            metrics=scraper,
            notify=operations.dispatcher,
            node=info.name,
        )
        guard = ConnectionGuard.within_descriptors(
            self.settings.header_timeout, self.settings.max_connections, reserved_descriptors()
        )
        server = HttpServer(self._http_config(context), guard)
        self._upgrader = Upgrader(
            list(self.options.arguments),
            self.generation,
            self.settings.upgrade_timeout,
            self._inheritance,
            self._successor_environment,
        )
        return _Serving(store, scheduler, server, control, started, operations, scraper, membership)

    async def _serve(self, serving: _Serving, token: str) -> None:
        """Enter the serving phase: accept, schedule, tell whoever waits."""
        tls = self.settings.tls_cert is not None
        url = listeners.url_of(next(iter(self._sockets.values())), tls)
        sockets = list(self._sockets.values())
        self._http = asyncio.create_task(serving.server.serve(sockets=sockets))
        try:
            await serving.server.wait_serving(self._http)
        except Exception as error:
            raise ServeError(f"cannot serve on {url}: {error}") from None
        self._schedule = asyncio.create_task(serving.scheduler.run())
        self._install_signals()
        self._enter(Phase.SERVING)
        store, scheduler = serving.store, serving.scheduler
        self._keep(
            "kill requests", lambda: chores.serve_kill_requests(store, scheduler, self.owner)
        )
        self._spawn(serving.membership.run(scheduler))
        if self.predecessor is not None:
            if await self.predecessor.report_ready():
                log.info("generation %d: the old process let go", self.generation)
            for name in await self._recover_and_reconcile(store, serving.operations):
                await scheduler.reload(name)
            self._keep(
                "contract migrations",
                lambda: chores.contract_when_alone(store, self.state_dir, self.owner),
            )
        runs, days = self.settings.retention_runs, self.settings.retention_days
        self._keep("retention", lambda: chores.prune_forever(store, runs, days))
        dispatcher = serving.operations.dispatcher
        self._keep("notification delivery", lambda: chores.deliver_notifications(dispatcher))
        counts, retry = serving.operations.counts, serving.scheduler.retry
        self._keep("metric totals", lambda: chores.save_metrics(counts, store, retry))
        scraper = serving.scraper
        self._keep(
            "metric merging",
            lambda: chores.merge_metric_totals(scraper, self.state_dir, self.owner),
        )
        self._spawn(logs.flush_forever())
        self._publish(url, token, serving.started)
        await store.add_event(
            "start", f"pid {os.getpid()} generation {self.generation} on {url}", serving.started
        )
        log.info(
            "evercron %s (generation %d) serving %s on %s (%s, state dir %s, %d jobs)",
            os.getpid(),
            self.generation,
            url,
            ", ".join(listeners.shown_address(sock) for sock in sockets),
            store.description,
            self.state_dir,
            len(scheduler.next_fires),
        )
        collector.settle_after_startup()
        logs.flush_all()  # what was logged so far comes before the lines below
        print(f"evercron listening on {url} (state dir {self.state_dir})", flush=True)
        print(f"web page: {url}/ (`evercron web` prints a link that signs you in)", flush=True)

    async def _finish(self, serving: _Serving) -> None:
        """Stopping or draining: wait for the server and the schedule to wind down, then
        for the running jobs (as long as they take after a handover, else within
        `shutdown_grace`)."""
        if self._schedule is not None:
            await self._schedule
        if self._http is not None:
            await self._http
        await self._finish_jobs(serving.scheduler, self.phase is Phase.DRAINING)
        await serving.operations.dispatcher.close()  # the sends under way end, recorded

    async def _tear_down(self, serving: _Serving) -> None:
        """Close everything, record the stop, and leave the shared files to a successor."""
        if self._signals is not None:
            self._signals.close()
        serving.scheduler.stop()
        for task in (self._http, self._schedule):
            if task is not None and not task.done():
                serving.server.should_exit = True
                with contextlib.suppress(Exception):
                    await task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await serving.scheduler.close()
        if self._handover is None and not serving.scheduler.launcher.running:
            await serving.membership.leave()
        with contextlib.suppress(Exception):
            await serving.operations.close(serving.store)
        with contextlib.suppress(Exception):
            await serving.store.add_event("stop", f"pid {os.getpid()}", dt.datetime.now(dt.UTC))
        await serving.store.close()
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
        if self.phase is Phase.SERVING and self._serving is not None:
            self._enter(Phase.STOPPING)
            self._shut_down()
            self._ended.set()

    async def upgrade(self) -> Handover:
        """Hand over to a new process started from the code and config on disk; returns
        once it serves. Raises `UpgradeError` (the old process keeps serving) when the new
        one fails, and `UpgradeBusy` while another upgrade is starting."""
        if self._upgrader is None or self.phase is not Phase.SERVING:
            raise UpgradeBusy("this daemon process is stopping; it cannot upgrade")
        if not self._upgrader.in_progress and self._upgrader.successor is None:
            self.notifier.reloading()
        try:
            handover = await self._upgrader.start_successor()
        except UpgradeBusy:
            raise  # the upgrade under way reports its own outcome
        except UpgradeError as error:
            if self.phase is Phase.SERVING:
                log.error("upgrade failed, still serving: %s", error)
                self.notifier.ready()
            await self._recover_after_failed_successor()
            raise
        if self.phase is not Phase.SERVING:  # stopping meanwhile: the successor is alone
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
        if self.phase is Phase.SERVING and self._serving is not None:
            # The successor's counters start from what this process counted so far:
            # written now, a scrape after the upgrade never sees them go backwards.
            await self._serving.operations.counts.flush(self._serving.store)
        if self.phase is Phase.SERVING:  # (a stop may have come meanwhile)
            self._enter(Phase.DRAINING)
            self._let_go()
        self._ended.set()
        return handover

    async def _recover_after_failed_successor(self) -> None:
        """A killed successor may have started firings before it was ready: mark its runs
        lost and end what they left running, as a restart would."""
        serving = self._serving
        if serving is None:
            return
        lost = await recover_lost_runs(serving.store, self.state_dir, self.settings.node_name)
        for run_id in lost:
            log.warning(
                "run %d of the failed new process marked lost", run_id, extra=about(run=run_id)
            )
        await serving.operations.note_lost(serving.store, lost)

    # -- signals: one handler each -----------------------------------------------------

    def _install_signals(self) -> None:
        router = SignalRouter(asyncio.get_running_loop())
        router.route(signal.SIGTERM, self._handle_term)
        router.route(signal.SIGINT, self._handle_int)
        router.route(signal.SIGHUP, self._handle_hup)
        self._signals = router

    def _handle_term(self, _signum: int) -> None:
        self._stop_signal("SIGTERM")

    def _handle_int(self, _signum: int) -> None:
        self._stop_signal("SIGINT")

    def _handle_hup(self, _signum: int) -> None:
        log.info("SIGHUP: hot upgrade")
        self._spawn(self._upgrade_logged())

    def _stop_signal(self, name: str) -> None:
        """The first stop signal shuts down gracefully (a draining process goes on
        draining); the next one ends running jobs."""
        self._stop_signals += 1
        if self._stop_signals == 1 and self.phase is Phase.SERVING:
            log.info("%s: graceful shutdown", name)
            self.request_stop()
        else:
            log.info("%s: ending running jobs (after shutdown_grace when draining)", name)
            self._hurry.set()

    async def _upgrade_logged(self) -> None:
        with contextlib.suppress(UpgradeError):  # logged by upgrade()
            await self.upgrade()

    # -- leaving the serving phase -----------------------------------------------------

    def _shut_down(self) -> None:
        serving = self._serving
        assert serving is not None
        log.info("shutting down: no new firings or connections")
        self.notifier.stopping()
        serving.scheduler.stop()
        serving.scheduler.live.close_all()
        serving.control.draining = True
        serving.server.should_exit = True

    def _let_go(self) -> None:
        """The handover, from the old side: stop accepting and claiming, tell the
        successor it may write shared state, end live streams, drain."""
        serving = self._serving
        assert serving is not None and self._upgrader is not None
        serving.control.draining = True
        serving.server.drain()
        serving.scheduler.hand_over()
        self._upgrader.acknowledge()
        serving.scheduler.live.close_all()
        state.write_generation(self.state_dir, self.owner, self._generation_info(serving.started))

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

    def _open_doors(self, token: str | None, viewer: str | None) -> dict[str, socket.socket]:
        """The listening sockets (inherited, activated or bound), once the tokens suit
        the addresses they listen on."""
        inherited = self.predecessor.fds if self.predecessor is not None else {}
        try:
            sockets = listeners.open_listeners(inherited, self.settings.host, self.settings.port)
            try:
                tokens.check_tokens(token, viewer, sockets.values())
            except tokens.TokenError:
                for sock in sockets.values():
                    sock.close()
                raise
        except (listeners.ListenError, tokens.TokenError) as error:
            raise ServeError(str(error)) from None
        return sockets

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

    async def _recover_and_reconcile(self, store: Store, operations: Operations) -> list[str]:
        """Mark runs of dead daemons lost (told to `operations`) and make the store's
        config jobs exactly the config's; the names of the jobs that changed."""
        now = dt.datetime.now(dt.UTC)
        lost = await recover_lost_runs(store, self.state_dir, self.settings.node_name)
        for run_id in lost:
            await store.add_event("lost", f"run {run_id}", now)
        await operations.note_lost(store, lost)
        return await store.reconcile_jobs(self.options.config.jobs, now)

    async def _log_limits(self, store: Store, scheduler: Scheduler) -> None:
        """Say how job limits are enforced here, and which jobs set one that is not."""
        how = limit_support().describe()  # (also sweeps groups left by dead daemons)
        log.info("job limits: %s", "; ".join(f"{key}: {value}" for key, value in how.items()))
        for stored in await store.list_jobs():
            scheduler.launcher.unenforced.check(stored.job)

    def _publish(self, url: str, token: str, started: dt.datetime) -> None:
        state.write_address(self.state_dir, url, token)
        if self.options.pid_file is not None:
            state.write_pid_file(self.options.pid_file)
        state.write_generation(self.state_dir, self.owner, self._generation_info(started))
        init.report_serving(self._supervisor)
        if self.predecessor is None:
            self.notifier.ready()

    def _node_info(self) -> NodeInfo:
        """This process as a node: its name, where it lives (machine and state dir: a
        restart here is the same node, a second one elsewhere is refused), its tags."""
        settings = self.settings
        return NodeInfo(
            name=settings.node_name,
            home=f"{state.machine_id()}:{self.state_dir.resolve()}",
            owner=self.owner,
            tags=settings.node_tags,
            version=__version__,
            pid=os.getpid(),
            lease=settings.node_lease,
            max_running=settings.max_running,
        )

    def _readiness(self) -> str | None:
        """Why this node should not be sent work now (`/readyz`), or None."""
        serving = self._serving
        if self.phase is not Phase.SERVING or serving is None:
            return f"the daemon is {self.phase.value}"
        reason = serving.membership.readiness()
        if reason is None and serving.scheduler.retry.failing:
            reason = "the store refuses writes"
        return reason

    def _generation_info(self, started: dt.datetime) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "generation": self.generation,
            "started_at": started.isoformat(),
            "role": self.phase.value,
            "version": __version__,
        }

    def _me(self) -> GenerationInfo:
        serving = self._serving
        return GenerationInfo(
            pid=os.getpid(),
            generation=self.generation,
            role="draining" if self.phase is Phase.DRAINING else "serving",
            version=__version__,
            started_at=serving.started if serving else dt.datetime.now(dt.UTC),
            running_runs=sorted(serving.scheduler.launcher.running) if serving else [],
        )

    # -- plumbing ----------------------------------------------------------------------

    def _http_config(self, context: ApiContext) -> uvicorn.Config:
        return uvicorn.Config(
            create_app(context),
            log_level="warning",
            log_config=None,  # its records go through our handler and format
            lifespan="off",
            access_log=False,
            ssl_certfile=self.settings.tls_cert,
            ssl_keyfile=self.settings.tls_key,
            timeout_graceful_shutdown=10,
            backlog=ACCEPT_BACKLOG,
            ws="none",  # no WebSocket: every connection stays one the guard counts
        )

    def _keep(self, what: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a chore no passing failure may end (`chores.kept_alive`)."""
        self._spawn(chores.kept_alive(what, start))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def command_arguments() -> tuple[str, ...]:
    """This process's arguments after the program name (for the successor)."""
    return tuple(sys.argv[1:])
