"""`start` and `run`: one command, its output, its deadline, its whole process tree.

The lifecycle, as in Go's `os/exec`: `start()` returns a `RunningProcess`; its `wait()`
returns the `Result` once the main process has exited *and* everything it left behind is
gone; `kill()` ends it early. A `RunningProcess` cannot be restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import IO

from evercron.process.bulk import BulkStarter
from evercron.process.capture import OutputCapture, OutputChunk, Stream
from evercron.process.cgroup import RunCgroup, discover
from evercron.process.controllers import MAX_MEMORY, MAX_PROCESSES, LimitError, format_limit
from evercron.process.hold import HeldGroup
from evercron.process.pipes import ChildPipes
from evercron.process.procfs import boot_ticks, is_linux
from evercron.process.reaper import ExitInfo, reaper
from evercron.process.result import Result, Status
from evercron.process.spawn import Child, SpawnedChild, SpawnError, prepare_start
from evercron.process.spec import Command
from evercron.process.tree import ProcessTree

OutputSink = Callable[[OutputChunk], None]
"""Called in the event loop with every chunk of output as it arrives."""

_EOF_WAIT_GROUP = 1.0  # after the tree is gone, an unknown holder may keep a pipe open
_EOF_WAIT_MAIN = 0.2  # with kill_mode="main", leftovers may keep it open for good
_ORPHANED_GRACE = 5.0  # how long a start with no loop left waits for its group to go
_run_numbers = itertools.count(1)
_bulk_starter = BulkStarter()


_RUN_PREFIX = uuid.uuid4().hex[:12]


async def run(command: Command, on_output: OutputSink | None = None) -> Result:
    """Run `command` to the end and return its result (a failure to start is a result too).

    Cancelling the awaiting task ends the whole tree first (shielded), then propagates.
    """
    process = await start(command, on_output)
    return await process.wait()


async def start(
    command: Command,
    on_output: OutputSink | None = None,
    held: bool | HeldGroup = False,
    *,
    in_bulk: bool = False,
) -> RunningProcess:
    """Start `command` on the running event loop (Linux only).

    With `held`, everything is prepared (process, session, cgroup, pipes) but the command
    itself runs only at `RunningProcess.release()`: a scheduler prepares a firing's
    processes ahead and releases them together at the fire time. Given a `HeldGroup`,
    the command is released with the group (`HeldGroup.release()`: all at once, one
    write). The timeout counts from the release. A held command cannot take stdin data.

    `in_bulk` (implied by `held`) is for callers starting many commands at once, such as
    a scheduler's firings: the process is created on a worker thread, so the event loop
    keeps serving the others meanwhile; a single start is faster without it.
    """
    if not is_linux():
        raise RuntimeError("evercron.process needs Linux (process groups, /proc, pidfds)")
    if held is not False and command.stdin:
        raise ValueError("a held command cannot take stdin data")
    process = RunningProcess(command, on_output, held)
    await process._spawn(in_bulk or held is not False)
    return process


class RunningProcess:
    """A started command. Use `wait()`, `kill()`, `send_signal()`; read `result` at the end."""

    def __init__(
        self, command: Command, on_output: OutputSink | None, held: bool | HeldGroup = False
    ) -> None:
        self.command = command
        self.run_id = command.run_id or f"{_RUN_PREFIX}-{next(_run_numbers)}"
        self.pid: int | None = None
        self.pid_start_ticks: int | None = None
        """When the main process was started (clock ticks since boot, as in /proc, read
        just before: see `procfs.started_at_ticks`); with `pid` it names the process for
        good (a pid may be reused)."""
        self.result: Result | None = None
        """The result once finished, else None."""
        self._loop = asyncio.get_running_loop()
        self._sink = on_output
        self._capture = OutputCapture(command.max_output)
        self._started_at = dt.datetime.now(dt.UTC)
        self._started = time.monotonic()
        self._done: asyncio.Future[Result] = self._loop.create_future()
        self._stop_reason: Status | None = None
        self._termination: asyncio.Task[str | None] | None = None
        self._main_exited = False
        self._cpu_user = self._cpu_system = 0.0
        self._max_rss_kb = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._hold: IO[bytes] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reaper = reaper()
        self._held_start = held is not False
        self._on_release: list[Callable[[float], None]] = []
        self._group = held if isinstance(held, HeldGroup) else None
        self._held_in_group = False
        self._cgroups = discover() if command.tracking == "auto" else None
        self._cgroup: RunCgroup | None = None
        self._limit_error: str | None = None
        self._limits_note: str | None = None
        if self._cgroups is not None:
            try:
                self._cgroup = self._cgroups.acquire(command.max_processes, command.max_memory)
            except LimitError as error:  # never run without a limit it should have
                self._limit_error = str(error)

    @property
    def cgroup_directories(self) -> list[str]:
        """The cgroup directories of the run (its own group first, then those in cgroup
        v1 hierarchies that hold its limits); empty when it has none."""
        return [] if self._cgroup is None else self._cgroup.directories

    async def _spawn(self, in_bulk: bool) -> None:
        # The thread that creates the process waits until the child has exec'd (vfork).
        # A single command is spawned right here (lowest latency); bulk starts - a
        # scheduler's firings, held or late - are prepared here and spawned on a few
        # worker threads (see `bulk.py`), so a thousand of them do not stall the event
        # loop. The reaper reserves each pid as it is spawned, so no stray scan can take
        # it.
        command, held, group = self.command, self._held_start, self._group
        if self._limit_error is not None:
            self._finish_unstarted(self._limit_error, None)
            return
        self._reaper.become_subreaper()
        stdin = group.starting() if group is not None else None
        try:
            prepared = prepare_start(command, self.run_id, self._cgroup, held, stdin)

            def spawn() -> Child:
                self.pid_start_ticks = boot_ticks()
                return prepared.launch()

            if in_bulk:
                starting = _bulk_starter.start(
                    self._loop,
                    lambda: self._reaper.spawn_reserved(spawn),
                    self._end_abandoned,
                    self._end_orphaned,
                )
                try:
                    popen: Child = await starting
                except asyncio.CancelledError:
                    # Cancelled while waiting: the starter undoes the start when it
                    # comes. Cancelled just after it came: undone here.
                    if starting.done() and not starting.cancelled():
                        failed = starting.exception() is not None
                        self._end_abandoned(None if failed else starting.result())
                    raise
            else:
                popen = self._reaper.spawn_reserved(spawn)
        except SpawnError as error:
            if group is not None:
                group.abandoned()
            if self._cgroups is not None and self._cgroup is not None:
                self._cgroups.release(self._cgroup, empty=True)
            self._finish_unstarted(error.message, error.exit_code)
            return
        self._follow(popen)

    def _follow(self, popen: Child, abandoned: bool = False) -> None:
        """Watch the started process: its exit, its tree, its output, its deadline."""
        command, held, group = self.command, self._held_start, self._group
        self.pid = popen.pid
        pidfd = popen.pidfd if isinstance(popen, SpawnedChild) else None
        main_exit = self._reaper.watch(popen.pid, pidfd)
        self._popen = popen
        self._tree = ProcessTree(popen.pid, self.run_id, self._reaper, self._account, self._cgroup)
        self._reaper.account(popen.pid, None, self._account)
        self._pipes = ChildPipes(popen, command.stdin, self._on_data)
        self._hold = popen.stdin if held and group is None else None
        if not held and not abandoned:
            self._arm_deadline()
        self._supervisor = self._loop.create_task(self._supervise(main_exit))
        if group is not None and not abandoned:
            self._held_in_group = True
            group.joined(self._released)

    def _end_abandoned(self, child: Child | None) -> None:
        # Its starter was cancelled while the process was being made: nobody will wait
        # for it, so it is killed at once (before a release could let it run) and then
        # followed to the end like any killed run, its leftovers included.
        if self._group is not None:
            self._group.abandoned()
        if child is None:
            if self._cgroups is not None and self._cgroup is not None:
                self._cgroups.release(self._cgroup, empty=False)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        self._follow(child, abandoned=True)
        self._stop(Status.KILLED)

    def _end_orphaned(self, child: Child) -> None:
        # Started for an event loop that closed before the start could reach it (on the
        # starter's thread): nothing will follow it, so it is killed and reaped here -
        # with whatever it had forked already (they come back to us as orphans).
        if self._cgroup is not None:
            self._cgroup.signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
        self._reaper.forget(child.pid)
        deadline = time.monotonic() + _ORPHANED_GRACE
        while time.monotonic() < deadline:
            self._reaper.reap_strays()
            try:
                os.killpg(child.pid, 0)  # (a zombie still counts)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
        if isinstance(child, SpawnedChild):
            os.close(child.pidfd)
        if self._group is not None:
            self._group.abandoned()
        if self._cgroups is not None and self._cgroup is not None:
            self._cgroups.release(self._cgroup, empty=False)

    # -- public ------------------------------------------------------------------------

    async def wait(self) -> Result:
        """The result, once the main process exited and its whole tree is gone.

        If the waiting task is cancelled, the tree is ended first (the kill continues even
        if cancelled again) and the cancellation propagates; `result` stays readable.
        """
        try:
            return await asyncio.shield(self._done)
        except asyncio.CancelledError:
            self._stop(Status.KILLED)
            if self._supervisor is not None and not self._supervisor.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._done)
            raise

    async def kill(self, grace: float | None = None) -> Result:
        """End the tree now (SIGTERM, then SIGKILL after `grace`, by default the
        command's `kill_grace`; 0: SIGKILL at once); status `killed`."""
        self._stop(Status.KILLED, grace)
        return await self.wait()

    @property
    def held(self) -> bool:
        """Whether the command is prepared but not yet released."""
        return self._hold is not None or self._held_in_group

    def release(self) -> None:
        """Let a held command run now (no effect when it is not held). A member of a
        `HeldGroup` is released with its whole group."""
        if self._held_in_group and self._group is not None:
            self._group.release()
            return
        hold, self._hold = self._hold, None
        if hold is None:
            return
        with contextlib.suppress(OSError):
            os.write(hold.fileno(), b"go\n")
        with contextlib.suppress(OSError):
            hold.close()
        self._released()

    def when_released(self, callback: Callable[[float], None]) -> None:
        """Call `callback` with the time (POSIX) the command was let run: once released,
        or at once when it was never held or is released already. Never called for a
        held command that is killed before its release."""
        if self.held:
            self._on_release.append(callback)
        else:
            callback(self._started_at.timestamp())

    def _released(self, at: float | None = None) -> None:
        """The command was let run at `at` (POSIX time; now when None)."""
        if self._main_exited or self._done.done():
            return  # ended (killed) while held: it never ran
        now = time.time()
        at = now if at is None else min(at, now)
        self._held_in_group = False
        self._started_at = dt.datetime.fromtimestamp(at, dt.UTC)
        self._started = time.monotonic() - (now - at)
        self._arm_deadline(already=now - at)
        callbacks, self._on_release = self._on_release, []
        for callback in callbacks:
            callback(at)

    def _arm_deadline(self, already: float = 0.0) -> None:
        """Start the timeout, `already` seconds of which have passed."""
        if self.command.timeout is not None and not self._main_exited:
            self._deadline = self._loop.call_later(
                max(0.0, self.command.timeout - already), self._stop, Status.TIMED_OUT
            )

    def send_signal(self, signum: int) -> None:
        """Send one signal to the main process (no effect once it has exited)."""
        if self.pid is not None and not self._main_exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    # -- lifecycle ---------------------------------------------------------------------

    def _stop(self, reason: Status, grace: float | None = None) -> None:
        if self._main_exited or self._termination is not None or self._done.done():
            return
        self._stop_reason = reason
        main_only = self.command.kill_mode == "main"
        grace = self.command.kill_grace if grace is None else grace
        self._termination = self._loop.create_task(self._tree.terminate(grace, main_only))

    async def _supervise(self, main_exit: asyncio.Future[ExitInfo]) -> None:
        try:
            await self._follow_to_the_end(main_exit)
        except asyncio.CancelledError:
            # The event loop is being torn down under us: end the tree the only way left
            # (SIGKILL, no grace), so that nothing outlives the loop, and report it.
            self._tree.signal(signal.SIGKILL)
            if not self._done.done():
                self._set_result(
                    Status.KILLED, None, "SIGKILL", "ended: event loop closing", "SIGKILL"
                )
            raise

    async def _follow_to_the_end(self, main_exit: asyncio.Future[ExitInfo]) -> None:
        try:
            info = await main_exit
            held_by = self._group
            if self._held_in_group and held_by is not None and self._termination is None:
                # Fired on another thread, run and exited before the loop heard of the
                # release: it was let run all the same, and its start comes first.
                fired_at = held_by.fired_at
                if fired_at is not None:
                    self._released(fired_at)
            self._main_exited = True
            if self._deadline is not None:
                self._deadline.cancel()
            self._account(info)
            kill_signal = None
            if self._termination is not None:
                kill_signal = await self._termination
            elif self.command.kill_mode == "group":
                # Leftovers of a clean exit:
                await self._tree.terminate(self.command.kill_grace, after_exit=info.number)
            else:
                for pid in self._tree.strays():  # left to run: reaped when they end
                    self._reaper.adopt(pid)
            group = self.command.kill_mode == "group"
            await self._pipes.wait_closed(_EOF_WAIT_GROUP if group else _EOF_WAIT_MAIN)
            if self._cgroup is not None:
                exact = self._cgroup.cpu_times()
                if exact is not None:
                    self._cpu_user, self._cpu_system = exact
                self._limits_note = _limits_note(self._cgroup.limits_acted(), self.command)
        finally:
            if self._cgroups is not None and self._cgroup is not None:
                gone = self._main_exited and self.command.kill_mode == "group"
                self._cgroups.release(self._cgroup, empty=gone)
            self._reaper.account(self.pid, None, None)
            for pid in self._tree.known_strays:
                self._reaper.account(None, pid, None)
        self._held_in_group = False  # (its group's release finds it ended)
        if self._hold is not None:  # ended (killed) while still held
            with contextlib.suppress(OSError):
                self._hold.close()
            self._hold = None
        if isinstance(self._popen, subprocess.Popen):
            self._popen.returncode = info.status  # Popen must never wait() on its own
        self._finish(info.status, kill_signal)

    def _account(self, info: ExitInfo) -> None:
        if info.rusage is not None:
            self._cpu_user += info.rusage.ru_utime
            self._cpu_system += info.rusage.ru_stime
            self._max_rss_kb = max(self._max_rss_kb, info.rusage.ru_maxrss)

    def _finish(self, status: int, kill_signal: str | None) -> None:
        exit_code: int | None = None
        signal_name: str | None = None
        if os.WIFSIGNALED(status):
            signal_name = _signal_name(os.WTERMSIG(status))
        else:
            exit_code = os.waitstatus_to_exitcode(status)
        if self._stop_reason is not None:
            outcome = self._stop_reason
        else:
            outcome = Status.SUCCEEDED if exit_code == 0 else Status.FAILED
        self._set_result(outcome, exit_code, signal_name, self._limits_note, kill_signal)

    def _finish_unstarted(self, message: str, exit_code: int | None) -> None:
        self._set_result(Status.FAILED, exit_code, None, message, None)

    def _set_result(
        self,
        status: Status,
        exit_code: int | None,
        signal_name: str | None,
        error: str | None,
        kill_signal: str | None,
    ) -> None:
        self.result = Result(
            status=status,
            exit_code=exit_code,
            signal=signal_name,
            pid=self.pid,
            run_id=self.run_id,
            started_at=self._started_at,
            finished_at=dt.datetime.now(dt.UTC),
            duration=time.monotonic() - self._started,
            cpu_user=self._cpu_user,
            cpu_system=self._cpu_system,
            max_rss_kb=self._max_rss_kb,
            output=self._capture.result(),
            error=error,
            kill_signal=kill_signal,
        )
        self._done.set_result(self.result)

    def _on_data(self, stream: Stream, data: bytes) -> None:
        chunk = self._capture.add(stream, data, time.time())
        if self._sink is not None:
            self._sink(chunk)


def _limits_note(acted: dict[str, int], command: Command) -> str | None:
    """What the run's limits did, for `Result.error` (None: nothing)."""
    notes = []
    kills = acted.get(MAX_MEMORY)
    if kills and command.max_memory is not None:
        limit = format_limit(MAX_MEMORY, command.max_memory)
        notes.append(
            f"{kills} process{'es' if kills > 1 else ''} killed by the kernel for exceeding "
            f"max_memory ({limit})"
        )
    refused = acted.get(MAX_PROCESSES)
    if refused and command.max_processes is not None:
        notes.append(
            f"max_processes ({command.max_processes}) reached: {refused} "
            f"fork{'s' if refused > 1 else ''} refused"
        )
    return "; ".join(notes) or None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"
