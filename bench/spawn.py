"""Benchmark: spawning commands through evercron vs subprocess and raw asyncio, one process.

Runs per second for `true` and `/bin/sh -c true` (all in runs/s): evercron with full
capture (its output pipes, sink and bounded buffers), by default (a cgroup per run where
possible) and with `tracking="session"`, `asyncio.create_subprocess_exec` with a stdout pipe, and
`subprocess.run` with captured stdout; then the memory each idle running command costs
evercron. Median of --repeats rounds, the methods interleaved within each round.

    .venv/bin/python bench/spawn.py [--runs 2000] [--concurrency 16] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import platform
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from evercron.process import Command, OutputChunk, RunningProcess, start
from evercron.process import run as evercron_run
from evercron.process.cgroup import discover

COMMANDS = {"true": ["true"], "sh -c true": ["/bin/sh", "-c", "true"]}


async def via_evercron(argv: list[str]) -> None:
    chunks: list[OutputChunk] = []
    result = await evercron_run(Command(argv), on_output=chunks.append)
    assert result.exit_code == 0


async def via_evercron_session(argv: list[str]) -> None:
    chunks: list[OutputChunk] = []
    result = await evercron_run(Command(argv, tracking="session"), on_output=chunks.append)
    assert result.exit_code == 0


async def via_asyncio(argv: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    await process.communicate()
    assert process.returncode == 0


async def via_subprocess(argv: list[str]) -> None:
    assert subprocess.run(argv, stdout=subprocess.PIPE, check=False).returncode == 0


Method = Callable[[list[str]], Awaitable[None]]
METHODS: dict[str, tuple[Method, bool]] = {
    "evercron": (via_evercron, True),
    "evercron session": (via_evercron_session, True),
    "asyncio": (via_asyncio, True),
    "subprocess.run": (via_subprocess, False),
}


async def rate(method: Method, argv: list[str], runs: int, concurrency: int) -> float:
    """Runs per second with up to `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await method(argv)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return runs / (time.perf_counter() - began)


async def idle_memory(count: int) -> tuple[float, float]:
    """Python heap (tracemalloc) and RSS growth per idle running command, in KB."""
    gc.collect()
    rss_before = _rss_kb()
    tracemalloc.start()
    heap_before = tracemalloc.get_traced_memory()[0]
    processes: list[RunningProcess] = [
        await start(Command(["sleep", "30"], timeout=60)) for _ in range(count)
    ]
    await asyncio.sleep(0.5)
    gc.collect()
    heap = (tracemalloc.get_traced_memory()[0] - heap_before) / 1024 / count
    tracemalloc.stop()
    rss = (_rss_kb() - rss_before) / count
    await asyncio.gather(*(p.kill() for p in processes))
    return heap, rss


def _median_ratio(ours: list[float], theirs: list[float]) -> str:
    """The median of the per-round ratios, with their range."""
    ratios = sorted(a / b for a, b in zip(ours, theirs, strict=True))
    return f"{statistics.median(ratios):.0%} ({ratios[0]:.0%}-{ratios[-1]:.0%})"


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=2000)
    options.add_argument("--concurrency", type=int, default=16)
    options.add_argument("--repeats", type=int, default=7)
    args = options.parse_args()
    print(
        f"# {dt.date.today()} {platform.machine()} CPython {platform.python_version()}; "
        f"{args.runs} runs per round, {args.concurrency} in flight "
        f"(subprocess.run: 1, it blocks), median of {args.repeats} rounds; ratios: median "
        "of the per-round ratios (range)"
    )
    await rate(via_evercron, ["true"], 50, 4)  # warm up both paths
    await rate(via_asyncio, ["true"], 50, 4)
    cgroups = "a cgroup per run" if discover() is not None else "no cgroups on this machine"
    print(f"evercron default: {cgroups}; evercron session: tracking='session'\n")
    print(
        "| command | evercron | evercron session | asyncio | subprocess.run "
        "| evercron / asyncio | session / asyncio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, argv in COMMANDS.items():
        samples: dict[str, list[float]] = {name: [] for name in METHODS}
        for round_number in range(args.repeats):
            # Every other round in reverse order (ABBA), so a machine getting busier or
            # quieter during a round favours no method.
            order = list(METHODS.items())
            for name, (method, concurrent) in order[:: -1 if round_number % 2 else 1]:
                runs = args.runs if concurrent else args.runs // 4
                samples[name].append(
                    await rate(method, argv, runs, args.concurrency if concurrent else 1)
                )
        ours, session, raw, blocking = (statistics.median(samples[n]) for n in METHODS)
        # Ratios within each round (its methods ran minutes apart at most), then their
        # median: steadier on a shared machine than a ratio of medians.
        ours_ratio = _median_ratio(samples["evercron"], samples["asyncio"])
        session_ratio = _median_ratio(samples["evercron session"], samples["asyncio"])
        print(
            f"| `{label}` | {ours:.0f} | {session:.0f} | {raw:.0f} | {blocking:.0f} "
            f"| {ours_ratio} | {session_ratio} |"
        )
    heap, rss = await idle_memory(500)
    print(f"\nidle running command (500 `sleep`): {heap:.1f} KB Python heap, {rss:.1f} KB RSS each")


if __name__ == "__main__":
    asyncio.run(main())
