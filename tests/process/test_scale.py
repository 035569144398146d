"""The runner at scale and in odd places: huge output, many runs, PID 1."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from evercron.process import Command, Status, run
from evercron.process.cgroup import discover
from evercron.process.reaper import reaper
from tests.markers import zombie_children


def _python(code: str, *prefix: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [*prefix, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_one_gib_of_output_in_bounded_memory() -> None:
    # Measured in a child process: its own peak RSS (VmHWM of its own memory map; the
    # rusage figure would include pytest's memory from before the child's exec).
    out = _python("""
        import asyncio
        from evercron.process import Command, run
        result = asyncio.run(run(Command("head -c 1073741824 /dev/zero; echo end >&2")))
        peak = next(line.split()[1] for line in open("/proc/self/status")
                    if line.startswith("VmHWM:"))
        print(result.status, result.output.total_bytes, result.output.truncated,
              len(result.output.data()), result.output.data("stderr"), peak)
    """)
    status, total, truncated, kept, stderr, max_rss_kb = out.split()
    assert (status, total, truncated) == ("succeeded", str(1024**3 + 4), "True")
    assert int(kept) == 1024 * 1024
    assert stderr == "b'end\\n'"
    assert int(max_rss_kb) < 100 * 1024


def test_two_hundred_concurrent_runs() -> None:
    async def scenario() -> list[tuple[Status, str, str]]:
        commands = [Command("echo $EVERCRON_RUN_ID; sleep 0.3", run_id=f"r{i}") for i in range(200)]
        results = await asyncio.gather(*(run(c) for c in commands))
        return [(r.status, r.run_id, r.output.text().strip()) for r in results]

    outcomes = asyncio.run(scenario())
    assert outcomes == [(Status.SUCCEEDED, f"r{i}", f"r{i}") for i in range(200)]


def test_a_thousand_sequential_runs_leak_nothing() -> None:
    async def scenario() -> None:
        for index in range(1000):
            result = await run(Command(["true"] if index % 2 else "echo x"))
            assert result.status is Status.SUCCEEDED

    asyncio.run(run(Command(["true"])))  # warm up: the loop and reaper set themselves up
    fds_before = len(os.listdir("/proc/self/fd"))
    asyncio.run(scenario())
    reaper().reap_strays()
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert zombie_children() == []


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a PID namespace needs root and unshare(1)",
)
def test_as_pid_1_orphans_are_reaped_and_own_statuses_kept() -> None:
    out = _python(
        """
        import asyncio, os, time
        from evercron.process import Command, run
        assert os.getpid() == 1
        async def main():
            # Orphans that outlive their runs (kill_mode=main) die later: PID 1 reaps them.
            for _ in range(5):
                await run(Command("(sleep 0.2 &); exit 0", kill_mode="main"))
            result = await run(Command("sleep 0.5; exit 7"))
            await asyncio.sleep(0.5)
            zombies = []
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            zombies.append(pid)
            print(result.exit_code, len(zombies))
        asyncio.run(main())
    """,
        "unshare",
        "-pf",
        "--mount-proc",
    )
    assert out.split() == ["7", "0"]


def test_per_run_cgroups_are_removed_when_the_process_exits() -> None:
    root = discover()
    if root is None:
        pytest.skip("needs a writable cgroup v2 (per-run cgroups)")
    out = _python("""
        import asyncio, os
        from evercron.process import Command, run
        async def main():
            await asyncio.gather(*(run(Command("true")) for _ in range(5)))
        asyncio.run(main())
        print(os.getpid())
    """)
    pid = out.split()[0]
    assert [p.name for p in root.path.iterdir() if p.name.startswith(f"{pid}-")] == []
