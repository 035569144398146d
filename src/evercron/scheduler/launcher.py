"""Running claimed firings: their processes, their output, their results.

The one rule here: every run handed to `Launcher.launch` reaches a final status in the
store, whatever fails where - a start that raises, a cancelled task, a store that refuses
writes for a while (the result waits and is written when it accepts them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from evercron.logfields import about
from evercron.model import Job, RunStatus, Trigger
from evercron.process import Command, HeldGroup, Result, RunningProcess, start
from evercron.process.spawn import runs_without_shell
from evercron.scheduler.clock import Clock
from evercron.scheduler.command import UnenforcedLimits
from evercron.scheduler.lag import LagMonitor
from evercron.scheduler.live import LiveOutput
from evercron.scheduler.observer import Observers, RunEnded, RunObserver, RunStarted
from evercron.scheduler.output import OutputSink
from evercron.scheduler.slots import Slots, live_process_limit
from evercron.store import RetryPolicy, RunEnd, Store, StoreError, persist

log = logging.getLogger("evercron.jobs")
_SPAWNING = 64  # firings handed to the spawning threads at once (see `_spawn_turn`)
_STOPPED = "the daemon stopped before it started"


class LaunchMode(enum.Enum):
    """How a claimed firing's process is started."""

    NOW = "now"
    """At once (a manual run, a retry, a catch-up, a late firing)."""
    HELD = "held"
    """Prepared now behind a waiting /bin/sh and released at `release_at`, together with
    every other firing due then (one write releases them all)."""
    DIRECT = "direct"
    """In a crowd (an instant with more firings than the CPUs start comfortably, or as
    many late firings caught up together): started at `release_at` itself, or at once
    when that has passed, without a shell - one exec per run instead of two, when CPU
    rather than timing bounds how soon firings run. Tracked by its session and
    `EVERCRON_RUN_ID` (only a shell could join a cgroup before the command runs)."""


def launch_mode(
    command: Command, release_at: float | None, now: float, crowded: bool
) -> LaunchMode:
    """The one place a launch mode is chosen: directly in a crowd when the command needs
    no shell, else held until a future instant, else now. (A crowd that is late takes
    the direct start too: the costlier start would only make it later still.)"""
    if crowded and runs_without_shell(command):
        return LaunchMode.DIRECT
    if release_at is None or release_at <= now:
        return LaunchMode.NOW
    return LaunchMode.HELD


@dataclass(frozen=True)
class Launch:
    """A claimed run to start: its row, its job, its command and how to start it."""

    run_id: int
    job: Job
    scheduled_at: dt.datetime
    trigger: Trigger
    command: Command
    mode: LaunchMode = LaunchMode.NOW
    release_at: float | None = None
    attempt: int = 1
    retry_of: int | None = None
    fence: int | None = None
    """The run's fence: its result is recorded only while the run still has it."""

    @property
    def on_schedule(self) -> bool:
        """Whether it fires for a time of its schedule (not manual, a retry, a catch-up
        or `@reboot`): such a firing is expected on time, so lateness counts."""
        return self.trigger is Trigger.SCHEDULE and not self.job.schedule.is_reboot


RetryHook = Callable[[Launch, float], None]
"""Called with a failed launch and the backoff before its next attempt."""


class Launcher:
    """Starts claimed firings and records everything about them."""

    def __init__(
        self,
        store: Store,
        live: LiveOutput,
        clock: Clock,
        retry: RetryPolicy,
        on_retry: RetryHook,
        observer: RunObserver | None = None,
    ) -> None:
        self._store = store
        self._live = live
        self._clock = clock
        self._retry = retry
        self._on_retry = on_retry
        self.running: dict[int, tuple[Launch, RunningProcess | None]] = {}
        """This process's runs that have not ended, with their process once started."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_run: dict[int, asyncio.Task[None]] = {}
        self._kills: set[asyncio.Task[Result]] = set()
        self._release_groups: dict[float, HeldGroup] = {}
        self._instants: dict[float, asyncio.Event] = {}
        self._direct: set[int] = set()  # DIRECT launches whose process is not started yet
        self._direct_started = asyncio.Event()
        self._direct_started.set()
        self._kill_when_started: set[int] = set()
        self._fenced: dict[int, str] = {}  # runs ended by self-fencing, with the reason
        self._stopping = False
        self._slots = Slots(live_process_limit())
        # Firings being spawned: the rest wait here, cheaply (no process object, no
        # cgroup yet), and are checked against misfire_grace when their turn comes.
        self._spawning = asyncio.Semaphore(_SPAWNING)
        self.lag = LagMonitor()
        """How late scheduled firings start (and how many were missed)."""
        self.unenforced = UnenforcedLimits()
        """Tells once of each job limit this machine cannot enforce."""
        self.observer: RunObserver = observer or Observers()
        """Told about every start, recorded end and missed firing (metrics, notifications)."""

    # -- the interface -----------------------------------------------------------------

    def launch(self, launch: Launch) -> None:
        """Run `launch` in the background until its result is recorded."""
        self.unenforced.check(launch.job)
        self.running[launch.run_id] = (launch, None)
        self._live.begin(launch.run_id)
        if launch.mode is LaunchMode.DIRECT:
            self._direct.add(launch.run_id)
            self._direct_started.clear()
        task = asyncio.get_running_loop().create_task(self._run(launch))
        self._tasks.add(task)
        self._by_run[launch.run_id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._by_run.pop(launch.run_id, None))

    async def finished(self, run_id: int) -> None:
        """Return once run `run_id` of this launcher is recorded (at once if it is)."""
        task = self._by_run.get(run_id)
        if task is not None:
            await asyncio.wait([task])

    def running_of(self, job: str) -> list[int]:
        """Ids of this process's running runs of `job`."""
        return [run_id for run_id, (lch, _) in self.running.items() if lch.job.name == job]

    def kill(self, run_id: int) -> bool:
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
            self.kill(run_id)
        await self.wait_all(None)

    def fence(self, seconds_left: float, reason: str) -> int:
        """Self-fencing: end every run of this process before this node's lease runs out
        in `seconds_left` - SIGTERM then SIGKILL after `kill_grace` where that fits, else
        SIGKILL at once. Each ends `killed` with `reason`; how many were ended."""
        for run_id, (launch, process) in list(self.running.items()):
            self._fenced[run_id] = reason
            if process is None:
                self._kill_when_started.add(run_id)
                continue
            grace = launch.job.kill_grace if launch.job.kill_grace < seconds_left - 0.5 else 0.0
            killing = asyncio.get_running_loop().create_task(process.kill(grace))
            self._kills.add(killing)
            killing.add_done_callback(self._kills.discard)
        return len(self.running)

    async def direct_started(self, until: float) -> None:
        """Return once every DIRECT launch has its process (or ended without one), or at
        `until` (wall time) at the latest."""
        if not self._direct_started.is_set():
            await self._clock.wait(self._direct_started, until - self._clock.time())

    # -- one run -----------------------------------------------------------------------

    async def _run(self, launch: Launch) -> None:
        end: RunEnd | None = None
        cancelled = False
        try:
            end = await self._run_to_end(launch)
        except asyncio.CancelledError:
            cancelled = True
            end = self._ended(RunStatus.KILLED, "the daemon ended it while it was starting")
        except Exception as error:
            log.exception(
                "run %s of %s could not be run",
                launch.run_id,
                launch.job.name,
                extra=about(launch.job.name, launch.run_id),
            )
            end = self._ended(RunStatus.FAILED, f"internal error: {error!r}")
        finally:
            self._started_direct(launch.run_id)
            # Recorded even when this task is being cancelled: a claimed run always ends.
            await asyncio.shield(self._record(launch, end or self._ended(RunStatus.FAILED, "")))
        if cancelled:
            raise asyncio.CancelledError

    def _ended(self, status: RunStatus, error: str) -> RunEnd:
        return RunEnd(status, dt.datetime.fromtimestamp(self._clock.time(), dt.UTC), error=error)

    async def _run_to_end(self, launch: Launch) -> RunEnd:
        if not await self._slots.acquire():
            return self._ended(RunStatus.SKIPPED, _STOPPED)
        try:
            return await self._start_and_wait(launch)
        finally:
            self._slots.release()

    async def _start_and_wait(self, launch: Launch) -> RunEnd:
        release_at = launch.release_at
        if self._stopping and (release_at is None or release_at > self._clock.time() + 0.5):
            return self._ended(RunStatus.SKIPPED, _STOPPED)
        direct = launch.mode is LaunchMode.DIRECT
        if direct and release_at is not None and release_at > self._clock.time():
            await self._instant(release_at)
        missed = await self._spawn_turn(launch)
        if missed is not None:
            return missed
        sink = OutputSink(
            self._store, self._retry, self._live, launch.run_id, launch.job.max_output
        )
        try:
            process = await start(
                launch.command,
                sink.add,
                held=self._held_group(launch),
                # Scheduled firings and crowds come in bulk (a second's worth at a time):
                # never block the loop on their spawns; a manual trigger starts at once.
                in_bulk=direct or launch.release_at is not None,
            )
        finally:
            self._spawning.release()
            self._started_direct(launch.run_id)
        self.running[launch.run_id] = (launch, process)
        if launch.run_id in self._kill_when_started:
            self._kill_when_started.discard(launch.run_id)
            self.kill(launch.run_id)
        try:
            released = await self._note_start(launch, process)
            result = await process.wait()  # (cancelled, it ends the tree first)
        except BaseException:
            if process.result is None:
                await asyncio.shield(process.kill())
            raise
        await sink.close(result)
        if launch.job.log_output and result.output.total_bytes:
            log.info(
                "run %s of %s output:\n%s",
                launch.run_id,
                launch.job.name,
                result.output.text(),
                extra=about(launch.job.name, launch.run_id),
            )
        end = _end_of(result, released, sink)
        fenced = self._fenced.pop(launch.run_id, None)
        if fenced is not None and end.status is RunStatus.KILLED:
            end = dataclasses.replace(end, error=fenced)
        return end

    def _held_group(self, launch: Launch) -> HeldGroup | bool:
        at = launch.release_at
        if launch.mode is not LaunchMode.HELD or at is None or at <= self._clock.time():
            return False
        return self._held_until(at)

    async def _spawn_turn(self, launch: Launch) -> RunEnd | None:
        """Wait until this firing may be spawned; a skipped end (no turn held) when that
        came later than its `misfire_grace`: overloaded, it is recorded, not run late."""
        await self._spawning.acquire()
        late = self._clock.time() - launch.scheduled_at.timestamp()
        grace = launch.job.misfire_grace
        if not launch.on_schedule or late <= grace:
            return None
        self._spawning.release()
        self.lag.missed(launch.job.name, late)
        self.observer.firings_missed(launch.job.name, 1)
        return self._ended(
            RunStatus.SKIPPED,
            f"missed: it could start only {late:.1f}s late (misfire_grace {grace:g}s);"
            " the daemon was overloaded",
        )

    async def _note_start(self, launch: Launch, process: RunningProcess) -> list[float]:
        """Record the start (awaited: the result must come after it); the list gets the
        time the command was let run once it is."""
        released: list[float] = []
        if process.pid is None:
            return released
        process.when_released(functools.partial(self._released, launch, released))
        began = max(launch.release_at or 0.0, self._clock.time())
        await persist(
            self._retry,
            f"start of run {launch.run_id}",
            lambda: self._store.mark_started(
                launch.run_id,
                process.pid,
                process.pid_start_ticks,
                dt.datetime.fromtimestamp(began, dt.UTC),
                process.cgroup_directories,
            ),
        )
        return released

    def _released(self, launch: Launch, released: list[float], at: float) -> None:
        """The command of `launch` was let run at `at`: noted in `released`, its lag and
        observers told."""
        released.append(at)
        lateness = None
        if launch.on_schedule:
            lateness = at - (launch.release_at or launch.scheduled_at.timestamp())
            self.lag.started(launch.job.name, lateness)
        self.observer.run_started(RunStarted(launch.job, launch.run_id, launch.trigger, lateness))

    async def _record(self, launch: Launch, end: RunEnd) -> None:
        """Write the result (waiting for the store as long as it takes), then tell
        followers, the log and the retry policy."""
        try:
            recorded = await persist(
                self._retry,
                f"result of run {launch.run_id}",
                lambda: self._store.finish(launch.run_id, end, launch.fence),
            )
        except StoreError as error:  # refused for good: record at least that it ended
            log.error(
                "run %s: its result could not be recorded: %s",
                launch.run_id,
                error,
                extra=about(launch.job.name, launch.run_id),
            )
            end = RunEnd(
                end.status, end.finished_at, error=f"the result could not be recorded: {error}"
            )
            recorded = await persist(
                self._retry,
                f"end of run {launch.run_id}",
                lambda: self._store.finish(launch.run_id, end, launch.fence),
            )
        self.running.pop(launch.run_id, None)
        self._fenced.pop(launch.run_id, None)
        self._live.end(launch.run_id, str(end.status), end.output_bytes)
        job = launch.job
        if not recorded:
            # Fenced off meanwhile (its node was taken for dead, the run marked lost):
            # the result is kept as an event, never over the run's final status.
            detail = (
                f"run {launch.run_id} of {job.name} (fence {launch.fence}) ended {end.status} "
                f"(exit {end.exit_code}, signal {end.signal}) after it had ended elsewhere"
            )
            log.warning("late result: %s", detail, extra=about(job.name, launch.run_id))
            await persist(
                self._retry,
                f"late result of run {launch.run_id}",
                lambda: self._store.add_event("late-result", detail, end.finished_at),
            )
            return
        log.info(
            "run %s of %s %s (exit %s%s)",
            launch.run_id,
            job.name,
            end.status,
            end.exit_code,
            f", {end.signal}" if end.signal else "",
            extra=about(job.name, launch.run_id),
        )
        self.observer.run_ended(ended_as(job.name, launch.run_id, launch.trigger, end))
        if end.status in (RunStatus.FAILED, RunStatus.TIMED_OUT) and launch.attempt <= job.retries:
            self._on_retry(launch, job.retry_backoff * (2 ** (launch.attempt - 1)))

    # -- instants ----------------------------------------------------------------------

    def _held_until(self, at: float) -> HeldGroup:
        """The group of processes released together at `at` (wall time)."""
        group = self._release_groups.get(at)
        if group is None:
            group = self._release_groups[at] = HeldGroup()
            loop = asyncio.get_running_loop()

            def release() -> None:  # on the clock's instants thread, at the instant
                group.fire()
                loop.call_soon_threadsafe(self._release_group, at)

            self._clock.at(at, release)
        return group

    def _release_group(self, at: float) -> None:
        group = self._release_groups.pop(at, None)
        if group is not None:
            group.release()  # late members are released as they join

    async def _instant(self, at: float) -> None:
        """Return at `at` (wall time), as precisely as a held group's release."""
        arrival = self._instants.get(at)
        if arrival is None:
            arrival = self._instants[at] = asyncio.Event()
            loop = asyncio.get_running_loop()

            def arrive() -> None:  # on the clock's instants thread
                loop.call_soon_threadsafe(self._arrive, at)

            self._clock.at(at, arrive)
        await arrival.wait()

    def _arrive(self, at: float) -> None:
        arrival = self._instants.pop(at, None)
        if arrival is not None:
            arrival.set()

    def _started_direct(self, run_id: int) -> None:
        self._direct.discard(run_id)
        if not self._direct:
            self._direct_started.set()


def ended_as(job: str, run_id: int, trigger: Trigger, end: RunEnd) -> RunEnded:
    """What observers are told of a recorded end (a duration once the command ran)."""
    duration = None
    if end.started_at is not None:
        duration = max(0.0, (end.finished_at - end.started_at).total_seconds())
    return RunEnded(job, run_id, trigger, end.status, end.finished_at, duration)


def _end_of(result: Result, released: list[float], sink: OutputSink) -> RunEnd:
    """The stored end of a finished process; output the store refused is told."""
    error = result.error
    truncated = result.output.truncated
    if sink.lost_bytes:
        truncated = True
        lost = f"{sink.lost_bytes} bytes of output could not be stored: {sink.lost_reason}"
        error = f"{error}; {lost}" if error else lost
    return RunEnd(
        RunStatus(str(result.status)),
        result.finished_at,
        started_at=dt.datetime.fromtimestamp(released[0], dt.UTC) if released else None,
        exit_code=result.exit_code,
        signal=result.signal,
        cpu_user=result.cpu_user,
        cpu_system=result.cpu_system,
        max_rss_kb=result.max_rss_kb,
        output_bytes=result.output.total_bytes,
        output_truncated=truncated,
        error=error,
    )
