"""Running one claimed firing: its process, its output into the store and to followers,
its result, and its retries."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from evercron.model import Job, RunStatus, Trigger
from evercron.process import Command, HeldGroup, OutputChunk, Result, RunningProcess, start
from evercron.process.spawn import runs_without_shell
from evercron.scheduler.lag import LagMonitor
from evercron.scheduler.live import LiveEvent, LiveOutput
from evercron.store import SqliteStore, StoredChunk
from evercron.store.worker import StoreWorker

log = logging.getLogger("evercron.jobs")
_FLUSH_BYTES = 64 * 1024
_FLUSH_SECONDS = 0.5
_RELEASE_EARLY = 0.004
_FDS_PER_PROCESS = 8
# The daemon's own (store, sockets) and its HTTP connections, which get what the live
# processes leave (daemon.connections.connection_limit: 1000 by default).
_RESERVED_FDS = 1536
_MIN_LIVE = 64
_MAX_LIVE = 16384
_SPAWNING = 64  # firings handed to the spawning threads at once (see `_spawn_turn`)


def live_process_limit() -> int:
    """How many firings may have a process at once: each holds a few descriptors (pipes,
    a pidfd) and more while it is being spawned, so stay well inside RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_LIVE
    return max(_MIN_LIVE, min(_MAX_LIVE, (soft - _RESERVED_FDS) // _FDS_PER_PROCESS))


def reserved_descriptors() -> int:
    """Descriptors kept for the live processes (`live_process_limit` of them): HTTP
    connections may use only what is left."""
    return live_process_limit() * _FDS_PER_PROCESS


class _Slots:
    """A bound on firings with a live process, first come first served; waiting ones are
    refused once closed (the daemon is stopping)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._closed = False

    async def acquire(self) -> bool:
        """Take a slot, waiting for one; False once closed."""
        if self._closed:
            return False
        if self._used < self.limit and not self._waiting:
            self._used += 1
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # it was handed a slot just as it was cancelled
            raise

    def release(self) -> None:
        """Give a slot back (to the first waiter, if any)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes on; `_used` stays
                return
        self._used -= 1

    def close(self) -> None:
        """Refuse every waiter and every later request."""
        self._closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(False)


@dataclass(frozen=True)
class Firing:
    """A claimed run to start: which job, which run row, for which scheduled time."""

    run_id: int
    job: Job
    scheduled_at: dt.datetime
    trigger: Trigger
    attempt: int = 1
    retry_of: int | None = None

    @property
    def on_schedule(self) -> bool:
        """Whether it fires for a time of its schedule (not manual, a retry, a catch-up
        or `@reboot`): such a firing is expected on time, so lateness counts."""
        return self.trigger is Trigger.SCHEDULE and not self.job.schedule.is_reboot


class Launcher:
    """Starts claimed firings and records everything about them."""

    def __init__(
        self,
        store: SqliteStore,
        db: StoreWorker,
        owner: str,
        live: LiveOutput,
        claim_retry: Callable[[Firing, float], None],
    ) -> None:
        self._store = store
        self._db = db
        self._owner = owner
        self._live = live
        self._claim_retry = claim_retry
        self.running: dict[int, tuple[Firing, RunningProcess | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._kills: set[asyncio.Task[Result]] = set()
        self._release_groups: dict[float, HeldGroup] = {}
        self._instants: dict[float, asyncio.Event] = {}
        self._crowd: set[int] = set()  # firings of crowded instants not started yet
        self._crowd_started = asyncio.Event()
        self._crowd_started.set()
        self._kill_when_started: set[int] = set()
        self._stopping = False
        self._slots = _Slots(live_process_limit())
        # Firings being spawned: the rest wait here, cheaply (no process object, no
        # cgroup yet), and are checked against misfire_grace when their turn comes.
        self._spawning = asyncio.Semaphore(_SPAWNING)
        self.lag = LagMonitor()
        """How late scheduled firings start (and how many were missed)."""

    def launch(
        self, firing: Firing, release_at: float | None = None, crowded: bool = False
    ) -> None:
        """Run `firing` in the background; with `release_at` (POSIX time) its process is
        prepared now and released at that instant, together with the others due then.
        `crowded` says that instant has so many firings that CPU, not timing, bounds how
        soon they run: a command that needs no shell is then started at the instant
        itself, without one (see `process.runs_without_shell`), instead of behind a
        waiting /bin/sh - one exec per run instead of two. Such a run is tracked by its
        session rather than by a cgroup (which only a shell could join before the
        command runs)."""
        self.running[firing.run_id] = (firing, None)
        self._live.begin(firing.run_id)
        if crowded:
            self._crowd.add(firing.run_id)
            self._crowd_started.clear()
        task = asyncio.get_running_loop().create_task(self._run(firing, release_at, crowded))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def running_of(self, job: str) -> list[int]:
        """Ids of this process's running runs of `job`."""
        return [run_id for run_id, (f, _) in self.running.items() if f.job.name == job]

    async def kill(self, run_id: int) -> bool:
        """End a run of this process (status `killed`); False when it is not running here.
        A run still being started is killed as soon as its process exists."""
        entry = self.running.get(run_id)
        if entry is None:
            return False
        process = entry[1]
        if process is None:
            self._kill_when_started.add(run_id)
            return True
        killing = asyncio.get_running_loop().create_task(process.kill())
        self._kills.add(killing)
        killing.add_done_callback(self._kills.discard)
        return True

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The firings this launcher is starting or running."""
        return list(self._tasks)

    def stop(self) -> None:
        """Start nothing new: firings not yet started are recorded as skipped."""
        self._stopping = True
        self._slots.close()

    async def wait_all(self, timeout: float | None) -> bool:
        """Wait for every running firing to finish; False when `timeout` passed first."""
        pending = [t for t in self._tasks if not t.done()]
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=timeout)
        return not still

    async def kill_all(self) -> None:
        """End every running firing and wait until each is recorded."""
        for run_id in list(self.running):
            await self.kill(run_id)
        await self.wait_all(None)

    def _held_until(self, at: float) -> HeldGroup:
        """The group of processes released together at `at` (POSIX time)."""
        group = self._release_groups.get(at)
        if group is None:
            group = self._release_groups[at] = HeldGroup()
            # asyncio timers wake up to a millisecond late: wake a little early instead
            # and wait out the rest precisely (a few ms of the loop, once per instant).
            delay = max(0.0, at - time.time() - _RELEASE_EARLY)
            asyncio.get_running_loop().call_later(delay, self._release_group, at)
        return group

    def _release_group(self, at: float) -> None:
        _sleep_until(at)
        group = self._release_groups.pop(at, None)
        if group is not None:
            group.release()  # one write for all; late members are released on arrival

    async def _instant(self, at: float) -> None:
        """Return at `at` (POSIX time), as precisely as `_held_until`'s release."""
        arrival = self._instants.get(at)
        if arrival is None:
            arrival = self._instants[at] = asyncio.Event()
            delay = max(0.0, at - time.time() - _RELEASE_EARLY)
            asyncio.get_running_loop().call_later(delay, self._arrive, at)
        await arrival.wait()

    def _arrive(self, at: float) -> None:
        _sleep_until(at)
        arrival = self._instants.pop(at, None)
        if arrival is not None:
            arrival.set()

    async def crowd_started(self, until: float) -> None:
        """Return once every firing launched as `crowded` has its process (or ended
        without one), or at `until` (POSIX time) at the latest."""
        if not self._crowd_started.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._crowd_started.wait(), until - time.time())

    def _started_in_crowd(self, run_id: int) -> None:
        self._crowd.discard(run_id)
        if not self._crowd:
            self._crowd_started.set()

    async def _run(self, firing: Firing, release_at: float | None, crowded: bool) -> None:
        try:
            if not await self._slots.acquire():
                await self._skip(firing, "the daemon stopped before it started")
                return
            try:
                await self._run_process(firing, release_at, crowded)
            finally:
                self._slots.release()
        finally:
            self._started_in_crowd(firing.run_id)

    async def _spawn_turn(self, firing: Firing) -> bool:
        """Wait until this firing may be spawned; False (recorded as missed, no turn
        held) when that came later than its `misfire_grace`."""
        await self._spawning.acquire()
        late = time.time() - firing.scheduled_at.timestamp()
        grace = firing.job.misfire_grace
        if not firing.on_schedule or late <= grace:
            return True
        # Overloaded: it waited too long for a slot or a spawn. Recorded, not run late.
        self._spawning.release()
        self.lag.missed(firing.job.name, late)
        await self._skip(
            firing,
            f"missed: it could start only {late:.1f}s late (misfire_grace {grace:g}s);"
            " the daemon was overloaded",
        )
        return False

    async def _skip(self, firing: Firing, reason: str) -> None:
        await self._db(
            self._store.finish,
            firing.run_id,
            RunStatus.SKIPPED,
            dt.datetime.now(dt.UTC),
            error=reason,
        )
        self._live.end(firing.run_id, str(RunStatus.SKIPPED), 0)
        self.running.pop(firing.run_id, None)

    async def _run_process(self, firing: Firing, release_at: float | None, crowded: bool) -> None:
        job = firing.job
        sink = _OutputSink(self._store, self._db, self._live, firing.run_id, job.max_output)
        command = Command(
            job.command,
            shell=job.shell,
            cwd=job.cwd,
            env={
                **job.env,
                "EVERCRON_JOB": job.name,
                "EVERCRON_SCHEDULED_AT": firing.scheduled_at.astimezone(dt.UTC).isoformat(),
                "EVERCRON_ATTEMPT": str(firing.attempt),
            },
            umask=job.umask,
            nice=job.nice,
            limits=dict(job.limits),
            user=job.user,
            group=job.group,
            timeout=job.timeout,
            kill_grace=job.kill_grace,
            max_output=job.max_output,
            kill_mode="main" if job.kill_mode == "main" else "group",
            run_id=str(firing.run_id),
            tracking="session" if crowded else "auto",
        )
        direct = crowded and release_at is not None and runs_without_shell(command)
        if crowded and not direct:  # (rare: built for the usual case)
            command = dataclasses.replace(command, tracking="auto")
        result: Result | None = None
        released: list[float] = []
        if self._stopping and (release_at is None or release_at > time.time() + 0.5):
            await self._skip(firing, "the daemon stopped before it started")
            return
        if direct and release_at is not None and release_at > time.time():
            await self._instant(release_at)
        if not await self._spawn_turn(firing):
            return
        try:
            try:
                held = not direct and release_at is not None and release_at > time.time()
                group = self._held_until(release_at) if held and release_at is not None else False
                # Scheduled firings come in bulk (a second's worth at a time): never block
                # the loop on their spawns; a manual trigger starts right away.
                process = await start(command, sink.add, held=group, in_bulk=release_at is not None)
            finally:
                self._spawning.release()
                self._started_in_crowd(firing.run_id)
            self.running[firing.run_id] = (firing, process)
            if firing.run_id in self._kill_when_started:
                self._kill_when_started.discard(firing.run_id)
                await self.kill(firing.run_id)
            if process.pid is not None:
                process.when_released(released.append)  # the start time, fixed when it ends
                began = max(release_at or 0.0, time.time())
                if firing.on_schedule:
                    due = release_at if release_at is not None else firing.scheduled_at.timestamp()
                    process.when_released(lambda at: self.lag.started(job.name, at - due))
                # Not awaited: the store runs calls in order, so the finish comes after.
                self._db.submit(
                    self._store.mark_started,
                    firing.run_id,
                    process.pid,
                    process.pid_start_ticks,
                    dt.datetime.fromtimestamp(began, dt.UTC),
                )
            result = await process.wait()
        except Exception as error:
            log.exception("run %s of %s could not be run", firing.run_id, job.name)
            await self._db(
                self._store.finish,
                firing.run_id,
                RunStatus.FAILED,
                dt.datetime.now(dt.UTC),
                error=f"internal error: {error}",
            )
            self._live.end(firing.run_id, str(RunStatus.FAILED), sink.total)
            self.running.pop(firing.run_id, None)
            return
        await sink.close(result)
        status = RunStatus(str(result.status))
        await self._db(
            self._store.finish,
            firing.run_id,
            status,
            result.finished_at,
            started_at=dt.datetime.fromtimestamp(released[0], dt.UTC) if released else None,
            exit_code=result.exit_code,
            signal=result.signal,
            cpu_user=result.cpu_user,
            cpu_system=result.cpu_system,
            max_rss_kb=result.max_rss_kb,
            output_bytes=result.output.total_bytes,
            output_truncated=result.output.truncated,
            error=result.error,
        )
        self.running.pop(firing.run_id, None)
        self._live.end(firing.run_id, str(status), result.output.total_bytes)
        if job.log_output and result.output.total_bytes:
            log.info("run %s of %s output:\n%s", firing.run_id, job.name, result.output.text())
        log.info(
            "run %s of %s %s (exit %s%s)",
            firing.run_id,
            job.name,
            status,
            result.exit_code,
            f", {result.signal}" if result.signal else "",
        )
        if status in (RunStatus.FAILED, RunStatus.TIMED_OUT) and firing.attempt <= job.retries:
            backoff = job.retry_backoff * (2 ** (firing.attempt - 1))
            self._claim_retry(firing, backoff)


def _sleep_until(at: float) -> None:
    """Block until `at` (POSIX time): the last few milliseconds before an instant, which an
    asyncio timer would overshoot."""
    remaining = at - time.time()
    if remaining > 0:
        time.sleep(remaining)


class _OutputSink:
    """Output of one run: to followers at once, to the store in batches - the first half
    of `max_output` as it comes, the last half from the capture when the run ends."""

    def __init__(
        self, store: SqliteStore, db: StoreWorker, live: LiveOutput, run_id: int, max_output: int
    ) -> None:
        self._store = store
        self._db = db
        self._live = live
        self._run_id = run_id
        self._head_limit = max_output - max_output // 2
        self._pending: list[StoredChunk] = []
        self._pending_bytes = 0
        self._flusher: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.total = 0

    def add(self, chunk: OutputChunk) -> None:
        self._live.publish(self._run_id, LiveEvent(chunk.stream, chunk.offset, chunk.data))
        self.total = chunk.offset + len(chunk.data)
        if chunk.offset < self._head_limit:
            data = chunk.data[: self._head_limit - chunk.offset]
            self._pending.append(StoredChunk(chunk.offset, chunk.stream, chunk.at, data))
            self._pending_bytes += len(data)
            if self._pending_bytes >= _FLUSH_BYTES:
                self._flush()
            elif self._flusher is None:
                self._flusher = asyncio.get_running_loop().call_later(_FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if not self._pending:
            return
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        task = asyncio.get_running_loop().create_task(
            self._db(self._store.append_output, self._run_id, batch)
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self, result: Result) -> None:
        self._flush()
        tail = [
            StoredChunk(c.offset, c.stream, c.at, c.data)
            for c in result.output.tail
            if c.offset + len(c.data) > self._head_limit
        ]
        if tail:
            await self._db(self._store.append_output, self._run_id, tail)
        if self._writes:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._writes)
