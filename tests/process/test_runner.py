"""The process runner with real processes: trees, deadlines, output, errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evercron.process import (
    Command,
    HeldGroup,
    OutputChunk,
    Result,
    Status,
    descriptors,
    run,
    runner,
    start,
)
from evercron.process.cgroup import discover
from evercron.process.fork_gate import FORK_GATE
from evercron.process.procfs import ProcStat, read_stat, started_at_ticks
from evercron.process.reaper import reaper
from tests.markers import Marker, zombie_children


@pytest.fixture(autouse=True, params=["popen", "posix_spawn"])
def start_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs both ways a command is started: through Popen, and through
    posix_spawn once this process's descriptors are sealed (as the daemon's are)."""
    if request.param == "posix_spawn":
        descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", request.param == "posix_spawn")
    return str(request.param)


def run_now(command: Command) -> Result:
    """Run a command to the end in a fresh event loop."""
    return asyncio.run(run(command))


class TestExitStatus:
    def test_success_and_output(self) -> None:
        result = run_now(Command("echo out; echo err >&2"))
        assert result.status is Status.SUCCEEDED
        assert (result.exit_code, result.signal, result.error) == (0, None, None)
        assert result.output.data("stdout") == b"out\n"
        assert result.output.data("stderr") == b"err\n"
        assert result.pid is not None and result.duration >= 0
        assert result.finished_at >= result.started_at

    def test_failure_keeps_the_exit_code(self) -> None:
        result = run_now(Command(["sh", "-c", "exit 7"]))
        assert (result.status, result.exit_code) == (Status.FAILED, 7)

    def test_death_by_signal_is_named(self) -> None:
        result = run_now(Command("kill -SEGV $$"))
        assert result.status is Status.FAILED
        assert (result.exit_code, result.signal) == (None, "SIGSEGV")
        assert result.shell_exit_code == 128 + signal.SIGSEGV

    def test_the_command_gets_a_clean_process_of_its_own(self) -> None:
        # Only stdin, stdout and stderr (and ls's own listing), a session of its own,
        # and SIGPIPE back to its default although Python ignores it here.
        script = "echo $(ls /proc/self/fd); cat /proc/$$/stat; grep SigIgn /proc/$$/status"
        result = run_now(Command(script))
        descriptors_seen, stat, status = result.output.data("stdout").decode().split("\n")[-4:-1]
        assert sorted(descriptors_seen.split()) == ["0", "1", "2", "3"]
        fields = stat[stat.rfind(")") + 2 :].split()
        assert fields[3] == stat.split()[0]  # session id = its own pid: a session leader
        ignored = int(status.split()[1], 16)
        assert not ignored & (1 << (signal.SIGPIPE - 1))
        assert not ignored & (1 << (signal.SIGXFSZ - 1))

    def test_the_start_time_recorded_names_the_process(self) -> None:
        # Read from the clock just before the start (reading /proc would wait for the
        # exec): it must match the kernel's figure, which the lost-run check compares.
        async def scenario() -> tuple[int | None, ProcStat | None]:
            process = await start(Command("sleep 0.2"), in_bulk=True)
            stat = read_stat(process.pid) if process.pid is not None else None
            await process.wait()
            return process.pid_start_ticks, stat

        recorded, stat = asyncio.run(scenario())
        assert recorded is not None and stat is not None
        assert started_at_ticks(stat, recorded)
        assert not started_at_ticks(stat, recorded + 1_000)  # another process, later
        assert not started_at_ticks(stat, recorded - 1_000)  # or long before

    def test_cpu_time_of_the_tree_is_counted(self) -> None:
        busy = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"
        result = run_now(Command(f"({busy}) & ({busy}); wait"))
        assert result.cpu_user + result.cpu_system > 0.1
        assert result.max_rss_kb > 0


@contextlib.contextmanager
def _cgroup_join(way: str) -> Iterator[None]:
    """Runs join their cgroup `way`: "fork" (forked inside it) or "shell" (the /bin/sh
    trampoline joins it)."""
    root = discover()
    if root is None:
        pytest.skip("no writable cgroup v2 here: 'auto' is the same as 'session'")
    if way == "fork" or not root.can_host:
        if way == "fork" and not root.can_host:
            pytest.skip("this process cannot enter run cgroups: only the shell join exists")
        yield
        return
    root.can_host = False
    try:
        yield
    finally:
        root.can_host = True


@pytest.fixture(params=["auto", "auto-shell-join", "session"])
def tracking(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every way of finding a run's tree: a cgroup per run (where possible) - the child
    forked inside it, or joining it through the /bin/sh trampoline - and session."""
    if request.param == "session":
        yield "session"
        return
    with _cgroup_join("shell" if request.param == "auto-shell-join" else "fork"):
        yield "auto"


@pytest.mark.parametrize("join", ["fork", "shell"])
class TestCgroupJoin:
    def test_a_run_is_in_its_own_cgroup_before_its_command_runs(self, join: str) -> None:
        # Command lines (run by a /bin/sh that joins first) and argv commands (forked in
        # the group, or behind a trampoline), each held, direct and in bulk.
        async def scenario() -> list[str]:
            commands = [
                Command(args="cat /proc/self/cgroup")
                if i % 2
                else Command(args=["cat", "/proc/self/cgroup"])
                for i in range(30)
            ]
            held = [await start(command, held=True) for command in commands[:10]]
            for process in held:
                process.release()
            direct = [await start(command) for command in commands[10:20]]
            bulk = await asyncio.gather(*(start(c, in_bulk=True) for c in commands[20:]))
            results = [await process.wait() for process in held + direct + list(bulk)]
            return [r.output.text().split("0::", 1)[1].strip() for r in results]

        own = Path("/proc/self/cgroup").read_text()
        with _cgroup_join(join):
            groups = asyncio.run(scenario())
        assert all("/evercron-runs/" in group for group in groups)
        assert len(set(groups)) == len(groups), "each run has a group of its own"
        assert Path("/proc/self/cgroup").read_text() == own, "this process is back home"

    def test_a_pooled_group_removed_behind_our_back_is_made_again(self, join: str) -> None:
        results = []
        with _cgroup_join(join):
            root = discover()
            assert root is not None
            for command in (
                Command(args="cat /proc/self/cgroup"),
                Command(["cat", "/proc/self/cgroup"]),
            ):
                group = root.acquire()
                assert group is not None
                root.release(group, empty=True)  # pooled: the next run gets it
                group.path.rmdir()
                results.append(run_now(command))
        assert [r.status for r in results] == [Status.SUCCEEDED] * 2
        assert all("/evercron-runs/" in r.output.text() for r in results)

    def test_a_failed_start_leaves_this_process_in_its_own_cgroup(self, join: str) -> None:
        own = Path("/proc/self/cgroup").read_text()
        with _cgroup_join(join):
            result = run_now(Command(args=["/nonexistent/program"]))
        assert result.exit_code == 127
        assert Path("/proc/self/cgroup").read_text() == own


class TestProcessTree:
    def test_timeout_kills_background_children_too(self, marker: Marker, tracking: str) -> None:
        began = time.monotonic()
        result = run_now(
            Command(
                tracking=tracking,
                args=["bash", "-c", f"{marker.sleep()} & {marker.sleep()}"],
                timeout=1,
                kill_grace=5,
            )
        )
        assert result.status is Status.TIMED_OUT
        assert result.kill_signal == "SIGTERM"
        assert result.signal == "SIGTERM"
        assert result.shell_exit_code == 124
        assert time.monotonic() - began < 1 + 5
        assert marker.alive() == []

    def test_main_exit_ends_leftovers_at_once(self, marker: Marker, tracking: str) -> None:
        began = time.monotonic()
        result = run_now(
            Command(tracking=tracking, args=["bash", "-c", f"{marker.sleep()} & echo started"])
        )
        assert (result.status, result.exit_code) == (Status.SUCCEEDED, 0)
        assert result.output.text() == "started\n"
        assert time.monotonic() - began < 3
        assert marker.alive() == []

    def test_an_orphan_that_ended_before_the_main_process_leaves_no_zombie(
        self, tracking: str
    ) -> None:
        # The orphan comes back to us (subreaper) and dies while the main process still
        # runs: nothing of the tree is left at the main exit, but its zombie is ours.
        async def scenario() -> tuple[Result, list[int]]:
            background = await start(Command(tracking=tracking, args="sleep 0.5"))
            result = await run(
                Command(tracking=tracking, args="(sleep 0.05 &) ; sleep 0.3; echo done")
            )
            await background.wait()  # the last run ending scans for good
            return result, zombie_children()

        result, zombies = asyncio.run(scenario())
        assert result.status is Status.SUCCEEDED and result.output.text() == "done\n"
        assert zombies == []

    def test_double_forked_setsid_escapee_is_killed(self, marker: Marker, tracking: str) -> None:
        script = f"(setsid {marker.sleep()} > /dev/null 2>&1 &); {marker.sleep()}"
        result = run_now(
            Command(tracking=tracking, args=["bash", "-c", script], timeout=1, kill_grace=3)
        )
        assert result.status is Status.TIMED_OUT
        assert marker.alive() == []

    def test_escapee_left_by_a_clean_exit_is_killed(self, marker: Marker, tracking: str) -> None:
        script = f"(setsid sh -c '{marker.sleep()}' > /dev/null 2>&1 &); exit 0"
        result = run_now(Command(tracking=tracking, args=["bash", "-c", script]))
        assert result.status is Status.SUCCEEDED
        assert marker.alive() == []

    def test_sigterm_trap_gets_sigkill_after_grace(self, marker: Marker, tracking: str) -> None:
        script = f"trap '' TERM; {marker.sleep()} & wait"
        began = time.monotonic()
        result = run_now(
            Command(tracking=tracking, args=["bash", "-c", script], timeout=0.5, kill_grace=1)
        )
        elapsed = time.monotonic() - began
        assert result.status is Status.TIMED_OUT
        assert result.kill_signal == "SIGKILL"
        assert result.signal == "SIGKILL"
        assert 1.4 <= elapsed < 5
        assert marker.alive() == []

    def test_grandchild_holding_the_pipe_does_not_hang(self, marker: Marker, tracking: str) -> None:
        # The grandchild keeps stdout open; the run still ends when the main process does.
        script = f"(setsid {marker.sleep()} &) ; echo done"
        began = time.monotonic()
        result = run_now(Command(tracking=tracking, args=["bash", "-c", script]))
        assert result.status is Status.SUCCEEDED
        assert result.output.text() == "done\n"
        assert time.monotonic() - began < 3
        assert marker.alive() == []

    def test_explicit_kill(self, marker: Marker, tracking: str) -> None:
        async def scenario() -> Result:
            process = await start(
                Command(tracking=tracking, args=["bash", "-c", f"{marker.sleep()} & wait"])
            )
            await asyncio.sleep(0.3)
            return await process.kill()

        result = asyncio.run(scenario())
        assert result.status is Status.KILLED
        assert marker.alive() == []

    def test_cancelling_the_waiting_task_kills_the_tree(
        self, marker: Marker, tracking: str
    ) -> None:
        async def scenario() -> Result | None:
            process = await start(
                Command(tracking=tracking, args=["bash", "-c", f"{marker.sleep()} & wait"])
            )
            waiter = asyncio.create_task(process.wait())
            await asyncio.sleep(0.3)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            return process.result

        result = asyncio.run(scenario())
        assert result is not None and result.status is Status.KILLED
        assert marker.alive() == []

    def test_cancelling_a_bulk_start_leaves_nothing(self, marker: Marker, tracking: str) -> None:
        # Twenty bulk starts queue ahead, so the marked one is still waiting for its
        # worker when its task is cancelled: the process made after that is ended.
        async def scenario() -> list[Result]:
            ahead = [
                asyncio.create_task(start(Command("exit 0", tracking=tracking), in_bulk=True))
                for _ in range(20)
            ]
            late = asyncio.create_task(
                start(Command(marker.sleep(), tracking=tracking), in_bulk=True)
            )
            await asyncio.sleep(0)
            late.cancel()
            with pytest.raises(asyncio.CancelledError):
                await late
            results = [await (await task).wait() for task in ahead]
            deadline = time.monotonic() + 10  # its kill is reaped on this loop
            while (marker.alive() or zombie_children()) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return results

        results = asyncio.run(scenario())
        assert [r.status for r in results] == [Status.SUCCEEDED] * 20
        assert marker.alive() == []
        assert zombie_children() == []

    def test_a_bulk_start_made_after_its_loop_closed_is_ended(
        self, marker: Marker, tracking: str, start_path: str
    ) -> None:
        # The worker is inside the start (held at the fork gate) when the loop closes:
        # the process it then makes can reach no loop, and must not outlive it.
        gate = FORK_GATE.exclusive()
        gate.__enter__()
        try:

            async def scenario() -> None:
                pending = asyncio.create_task(
                    start(Command(marker.sleep(), tracking=tracking), in_bulk=True)
                )
                await asyncio.sleep(0.3)  # a worker took it and waits at the gate
                assert not pending.done()

            asyncio.run(scenario())  # cancels the start and closes the loop
        finally:
            gate.__exit__(None, None, None)
        deadline = time.monotonic() + 10
        starter = runner._bulk_starter
        while time.monotonic() < deadline and (  # the worker made it and ended it
            starter._waiting or starter._idle < starter._threads
        ):
            time.sleep(0.02)
        while (marker.alive() or zombie_children()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.alive() == []
        assert zombie_children() == []

    def test_a_bulk_start_cancelled_as_it_arrives_leaves_nothing(
        self, marker: Marker, tracking: str
    ) -> None:
        # The start's result is handed over, and the task is cancelled before it could
        # resume: the process made for it must still be ended.
        async def scenario() -> None:
            late = asyncio.create_task(
                start(Command(marker.sleep(), tracking=tracking), in_bulk=True)
            )
            await asyncio.sleep(0)  # it asks a worker and waits
            deadline = time.monotonic() + 10
            while not marker.alive() and time.monotonic() < deadline:
                time.sleep(0.01)  # the loop is held: the result is queued, not delivered
            time.sleep(0.2)  # (the worker queues it just after the spawn)
            await asyncio.sleep(0)  # delivered: the task resumes at the next turn ...
            late.cancel()  # ... but is cancelled first
            with pytest.raises(asyncio.CancelledError):
                await late
            deadline = time.monotonic() + 10
            while (marker.alive() or zombie_children()) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

        asyncio.run(scenario())
        assert marker.alive() == []
        assert zombie_children() == []

    def test_kill_mode_main_leaves_leftovers(self, marker: Marker, tracking: str) -> None:
        result = run_now(
            Command(
                tracking=tracking,
                args=["bash", "-c", f"{marker.sleep()} > /dev/null 2>&1 & echo ok"],
                kill_mode="main",
            )
        )
        assert result.status is Status.SUCCEEDED
        # The leftover was forked before the command ended, but it may not have exec'd
        # its marked program yet: wait for it (a kill would have ended it for good).
        deadline = time.monotonic() + 5
        while not marker.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        survivors = marker.alive()
        assert len(survivors) == 1
        os.kill(survivors[0], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while marker.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        reaper().reap_strays()

    def test_environment_marks_the_run(self, tracking: str) -> None:
        result = run_now(Command(tracking=tracking, args="echo $EVERCRON_RUN_ID", run_id="run-42"))
        assert result.output.text() == "run-42\n"
        assert result.run_id == "run-42"

    def test_cgroup_catches_an_escapee_with_a_cleared_environment(self, marker: Marker) -> None:
        if discover() is None:
            pytest.skip("needs a writable cgroup v2 (per-run cgroups)")
        script = f"(setsid env -i {marker.sleep()} > /dev/null 2>&1 &); exit 0"
        result = run_now(Command(["bash", "-c", script]))
        assert result.status is Status.SUCCEEDED
        assert marker.alive() == []

    def test_cgroup_cpu_accounting_covers_escapees(self) -> None:
        if discover() is None:
            pytest.skip("needs a writable cgroup v2 (per-run cgroups)")
        busy = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"
        script = f"setsid sh -c '{busy}' & wait"
        result = run_now(Command(["bash", "-c", script]))
        assert result.cpu_user + result.cpu_system > 0.2


class TestHeldStart:
    def test_a_held_command_runs_only_when_released(self, tmp_path: Path, tracking: str) -> None:
        flag = tmp_path / "ran"

        async def scenario() -> tuple[bool, bool, Result]:
            process = await start(
                Command(tracking=tracking, args=f"touch {flag}; echo out", timeout=0.5),
                held=True,
            )
            await asyncio.sleep(0.8)  # longer than the timeout: it counts from the release
            ran_before = flag.exists()
            assert process.held
            process.release()
            result = await process.wait()
            return ran_before, process.held, result

        ran_before, still_held, result = asyncio.run(scenario())
        assert not ran_before and not still_held
        assert result.status is Status.SUCCEEDED and result.output.text() == "out\n"
        assert flag.exists()

    @pytest.mark.parametrize("pause", [0.0, 0.2])
    def test_killing_a_held_command_never_runs_it(
        self, tmp_path: Path, tracking: str, pause: float
    ) -> None:
        # With no pause, the kill comes before the shell has joined its cgroup.
        flag = tmp_path / "ran"

        async def scenario() -> Result:
            process = await start(Command(tracking=tracking, args=f"touch {flag}"), held=True)
            await asyncio.sleep(pause)
            return await asyncio.wait_for(process.kill(), 30)

        result = asyncio.run(scenario())
        assert result.status is Status.KILLED
        assert not flag.exists()

    def test_escapees_of_held_commands_are_found_and_ended(
        self, marker: Marker, tracking: str
    ) -> None:
        # Held commands are forked by the spawner threads; their orphans come back to the
        # main thread, where the stray scans look.
        async def scenario() -> list[Result]:
            script = f"(setsid {marker.sleep()} > /dev/null 2>&1 &); exit 0"
            held = [
                await start(Command(tracking=tracking, args=["bash", "-c", script]), held=True)
                for _ in range(5)
            ]
            for process in held:
                process.release()
            return [await process.wait() for process in held]

        results = asyncio.run(scenario())
        assert {r.status for r in results} == {Status.SUCCEEDED}
        assert marker.alive() == []
        assert zombie_children() == []

    @pytest.mark.parametrize("how", ["held", "direct", "in bulk"])
    def test_a_command_line_is_run_as_by_sh_c(self, tracking: str, how: str) -> None:
        # However a run joins its group or waits for its release, the command line is
        # the shell's own script: the shell is the main process, `$0` is the shell's
        # name, there are no arguments, and a syntax error is reported as by `sh -c`.
        async def one(args: str) -> Result:
            command = Command(tracking=tracking, args=args)
            process = await start(command, held=how == "held", in_bulk=how == "in bulk")
            process.release()
            return await process.wait()

        async def scenario() -> tuple[Result, Result, Result]:
            return (
                await one('echo "$0" "$#"'),
                await one("echo $$"),
                await one("if then"),
            )

        names, last, broken = asyncio.run(scenario())
        assert names.output.text() == "/bin/sh 0\n"
        assert int(last.output.text()) == last.pid
        assert broken.exit_code == 2 and "Syntax error" in broken.output.text()

    def test_a_held_group_runs_only_when_released_and_all_at_once(self, tracking: str) -> None:
        async def scenario() -> tuple[float, list[Result], list[bool]]:
            group = HeldGroup()
            command = Command(tracking=tracking, args="date +%s.%N")
            members = [await start(command, held=group) for _ in range(20)]
            await asyncio.sleep(0.3)
            early = [m.result is not None for m in members]  # nothing ran meanwhile
            assert all(m.held for m in members)
            released = time.time()
            group.release()
            assert not any(m.held for m in members)
            return released, [await m.wait() for m in members], early

        released, results, early = asyncio.run(scenario())
        assert not any(early)
        assert {r.status for r in results} == {Status.SUCCEEDED}
        started = [float(r.output.text()) for r in results]
        assert all(released <= t < released + 5 for t in started)
        assert zombie_children() == []

    def test_a_released_group_lets_go_of_its_pipe(self, tracking: str) -> None:
        # Closed on a helper thread (closing waits for the members' reads): closed all the
        # same, soon, and never on the event loop.
        def pipe_inode(fd: int) -> int | None:
            with contextlib.suppress(OSError):
                return os.fstat(fd).st_ino
            return None

        async def scenario() -> list[tuple[int, int | None]]:
            group = HeldGroup()
            command = Command(tracking=tracking, args="true")
            members = [await start(command, held=group) for _ in range(50)]
            ends = [(fd, pipe_inode(fd)) for fd in (group._reader, group._writer) if fd]
            group.release()
            for member in members:
                await member.wait()
            return ends

        ends = asyncio.run(scenario())
        assert len(ends) == 2 and all(inode is not None for _, inode in ends)
        deadline = time.monotonic() + 10
        while any(pipe_inode(fd) == inode for fd, inode in ends):
            assert time.monotonic() < deadline, "the group's pipe is still open"
            time.sleep(0.01)

    def test_a_killed_member_never_runs_and_the_others_do(
        self, tmp_path: Path, tracking: str
    ) -> None:
        async def scenario() -> list[Result]:
            group = HeldGroup()
            members = [
                await start(Command(tracking=tracking, args=f"touch {tmp_path}/{i}"), held=group)
                for i in range(5)
            ]
            killed = await members[0].kill()
            members[1].release()  # a member's release is its group's
            return [killed] + [await m.wait() for m in members[1:]]

        results = asyncio.run(scenario())
        assert results[0].status is Status.KILLED
        assert [r.status for r in results[1:]] == [Status.SUCCEEDED] * 4
        assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2", "3", "4"]

    def test_a_member_started_during_the_release_runs_at_once(self, tracking: str) -> None:
        async def scenario() -> Result:
            group = HeldGroup()
            starting = asyncio.ensure_future(
                start(Command(tracking=tracking, args="echo late"), held=group)
            )
            await asyncio.sleep(0)  # its spawn is under way on a worker thread
            group.release()
            process = await starting
            assert not process.held
            return await asyncio.wait_for(process.wait(), 10)

        result = asyncio.run(scenario())
        assert result.status is Status.SUCCEEDED and result.output.text() == "late\n"

    def test_a_group_given_up_runs_nothing(self, tmp_path: Path, tracking: str) -> None:
        flag = tmp_path / "ran"

        async def scenario() -> list[Result]:
            group = HeldGroup()
            command = Command(tracking=tracking, args=f"touch {flag}")
            members = [await start(command, held=group) for _ in range(3)]
            group.close()
            group.release()  # too late: no effect
            return [await asyncio.wait_for(m.wait(), 10) for m in members]

        results = asyncio.run(scenario())
        assert not flag.exists()
        assert {(r.status, r.exit_code) for r in results} == {(Status.FAILED, 1)}

    def test_when_released_tells_the_real_start_and_never_for_a_killed_one(
        self, tracking: str
    ) -> None:
        async def scenario() -> tuple[list[float], list[float], list[float], float]:
            group = HeldGroup()
            held, killed, direct = [], [], []
            members = [await start(Command(tracking=tracking, args="true"), held=group)]
            members.append(await start(Command(tracking=tracking, args="true"), held=group))
            members[0].when_released(held.append)
            members[1].when_released(killed.append)
            await members[1].kill()
            await asyncio.sleep(0.3)
            assert held == []  # not before the release
            released = time.time()
            group.release()
            await members[0].wait()
            alone = await start(Command(tracking=tracking, args="true"))
            alone.when_released(direct.append)  # never held: told at once
            await alone.wait()
            return held, killed, direct, released

        held, killed, direct, released = asyncio.run(scenario())
        assert len(held) == 1 and released <= held[0] < released + 1
        assert killed == []
        assert len(direct) == 1 and direct[0] < released + 10

    def test_a_member_that_ran_and_ended_before_the_loop_heard_of_the_release(
        self, tracking: str
    ) -> None:
        """The instant's thread fired the group; the command ran and exited before the
        loop got to `release()` (a busy loop): its start is still told, and timed."""

        async def scenario() -> tuple[list[float], float, Result]:
            group = HeldGroup()
            process = await start(Command(tracking=tracking, args="true"), held=group)
            told: list[float] = []
            process.when_released(told.append)
            group.fire()
            fired_at = group.fired_at
            assert fired_at is not None
            result = await asyncio.wait_for(process.wait(), 10)
            group.release()  # only now
            return told, fired_at, result

        told, fired_at, result = asyncio.run(scenario())
        assert told == [fired_at]
        assert result.started_at.timestamp() == pytest.approx(fired_at, abs=1e-3)

    def test_held_commands_take_no_stdin(self) -> None:
        async def scenario() -> None:
            await start(Command(["cat"], stdin=b"x"), held=True)

        with pytest.raises(ValueError, match="cannot take stdin"):
            asyncio.run(scenario())


class TestOutput:
    def test_chunks_reach_the_sink_in_order_with_offsets(self) -> None:
        chunks: list[OutputChunk] = []
        script = "printf a; sleep 0.05; printf bb >&2; sleep 0.05; printf ccc"
        result = asyncio.run(run(Command(script), on_output=chunks.append))
        assert [(c.stream, c.data) for c in chunks] == [
            ("stdout", b"a"),
            ("stderr", b"bb"),
            ("stdout", b"ccc"),
        ]
        assert [c.offset for c in chunks] == [0, 1, 3]
        assert result.output.data() == b"abbccc"

    def test_binary_and_invalid_utf8_and_no_newline(self) -> None:
        payload = bytes(range(256)) * 10
        result = run_now(
            Command(["python3", "-c", "import sys; sys.stdout.buffer.write(bytes(range(256))*10)"])
        )
        assert result.output.data() == payload
        assert "\ufffd" in result.output.text()

    def test_capture_keeps_head_and_tail_within_the_limit(self) -> None:
        script = "python3 -c \"import sys; sys.stdout.write('A'*1000 + 'B'*100000 + 'C'*1000)\""
        result = run_now(Command(script, max_output=2000))
        assert result.output.total_bytes == 102000
        assert result.output.truncated
        kept = result.output.data()
        assert kept == b"A" * 1000 + b"C" * 1000

    def test_stdin_is_fed_and_closed(self) -> None:
        data = os.urandom(300_000)
        result = run_now(Command(["cat"], stdin=data, max_output=1_000_000))
        assert result.output.data() == data

    def test_stdin_is_empty_by_default(self) -> None:
        result = run_now(Command(["cat"], timeout=5))
        assert (result.status, result.output.total_bytes) == (Status.SUCCEEDED, 0)


class TestSettings:
    def test_cwd_env_and_clean_env(self, tmp_path: Path) -> None:
        result = run_now(
            Command(
                "pwd; echo $ONE; echo ${HOME:-none}",
                cwd=str(tmp_path),
                env={"ONE": "1"},
                inherit_env=False,
            )
        )
        assert result.output.text().splitlines() == [str(tmp_path), "1", "none"]

    def test_umask(self, tmp_path: Path) -> None:
        run_now(Command("touch f", cwd=str(tmp_path), umask=0o077))
        assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600

    def test_nice_and_limits_apply_before_the_command_runs(self) -> None:
        result = run_now(
            Command("nice; ulimit -n; ulimit -t", nice=7, limits={"nofile": 64, "cpu": (30, 40)})
        )
        assert result.output.text().splitlines() == ["7", "64", "30"]

    def test_cpu_limit_ends_a_busy_command(self) -> None:
        result = run_now(Command("while :; do :; done", limits={"cpu": 1}, timeout=20))
        assert result.status is Status.FAILED
        assert result.signal in ("SIGXCPU", "SIGKILL")

    @pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
    def test_user_switch_as_root(self) -> None:
        result = run_now(Command("id -un; id -gn; echo $HOME", user="nobody"))
        lines = result.output.text().splitlines()
        assert lines[0] == "nobody"
        assert lines[2] == "/nonexistent"


class TestStartFailures:
    def test_running_out_of_descriptors_is_a_clear_failure(self, marker: Marker) -> None:
        async def scenario() -> Result:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            highest = max(int(name) for name in os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
            fillers = []
            try:
                with contextlib.suppress(OSError):  # take the free numbers below the limit
                    while True:
                        fillers.append(os.open(os.devnull, os.O_RDONLY))
                return await run(Command(marker.sleep()))
            finally:
                for fd in fillers:
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        result = asyncio.run(scenario())
        assert result.status is Status.FAILED and result.pid is None
        assert result.error is not None and "evercron is out of resources" in result.error
        assert marker.alive() == []

    def test_not_found_is_127(self) -> None:
        result = run_now(Command(["no-such-program-xyz"]))
        assert (result.status, result.exit_code, result.pid) == (Status.FAILED, 127, None)
        assert result.error == 'exec: "no-such-program-xyz": executable file not found in $PATH'

    def test_not_found_by_path_is_127(self) -> None:
        result = run_now(Command(["/nonexistent/tool"]))
        assert result.exit_code == 127 and "no such file" in (result.error or "")

    def test_not_executable_is_126(self, tmp_path: Path) -> None:
        script = tmp_path / "script.sh"
        script.write_text("echo hi\n")
        result = run_now(Command([str(script)]))
        assert (result.exit_code, result.error) == (126, f'exec: "{script}": permission denied')

    def test_shell_reports_not_found_itself(self) -> None:
        result = run_now(Command("no-such-program-xyz"))
        assert result.exit_code == 127

    def test_missing_cwd(self, tmp_path: Path) -> None:
        result = run_now(Command(["true"], cwd=str(tmp_path / "gone")))
        assert result.status is Status.FAILED and result.exit_code is None
        assert result.error == f"chdir {tmp_path / 'gone'}: no such directory"
        assert result.shell_exit_code == 125

    @pytest.mark.skipif(os.geteuid() != 0, reason="user lookup happens only as root")
    def test_unknown_user(self) -> None:
        result = run_now(Command(["true"], user="no-such-user-xyz"))
        assert result.error == 'unknown user "no-such-user-xyz"'

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"args": ""}, "empty"),
            ({"args": []}, "at least one"),
            ({"args": "x", "timeout": 0}, "timeout"),
            ({"args": "x", "kill_mode": "all"}, "kill_mode"),
            ({"args": "x", "limits": {"rss": 1}}, 'unknown limit "rss"'),
            ({"args": "x", "limits": {"nofile": (10, 5)}}, "above hard"),
            ({"args": "x", "nice": 40}, "nice"),
            ({"args": "echo a\0b"}, "NUL"),
            ({"args": ["echo", "a\0b"]}, "NUL"),
            ({"args": "x", "env": {"A": "\0"}}, "NUL"),
            ({"args": "x", "cwd": "/\0"}, "NUL"),
        ],
    )
    def test_bad_commands_are_rejected_clearly(
        self, kwargs: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            Command(**kwargs)  # type: ignore[arg-type]
