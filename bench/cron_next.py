"""Benchmark: evercron's cron engine beside croniter and cronsim, in one process.

For each expression: 1,000 consecutive `next()` calls from a naive start, and 1,000 with
Europe/Berlin (500 from just before each 2024 DST change); the median of 5 repeats. Also
parse time against constructing a croniter/cronsim object. Prints a table with the ratio
of the faster peer's time to evercron's (higher is better for evercron).

    .venv/bin/python bench/cron_next.py [--repeats 5] [--calls 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import statistics
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from croniter import croniter
from cronsim import CronSim

from evercron.cron import parse

EXPRESSIONS = [
    "* * * * *",
    "*/5 * * * *",
    "0 9 * * MON-FRI",
    "0 0 1 * *",
    "0 0 29 2 *",
    "0 0 L * *",
    "15 10 * * 5#3",
    "0 */2 * * *",
    "30 2 * * *",
    "0 30 9 1-7 * TUE *",
]
BERLIN = ZoneInfo("Europe/Berlin")
NAIVE_STARTS = [dt.datetime(2024, 1, 1)]
BERLIN_STARTS = [
    dt.datetime(2024, 3, 30, 12, tzinfo=BERLIN),
    dt.datetime(2024, 10, 26, 12, tzinfo=BERLIN),
]

Runner = Callable[[str, dt.datetime, int], list[dt.datetime]]


def run_evercron(expr: str, start: dt.datetime, calls: int) -> list[dt.datetime]:
    schedule = parse(expr)
    out, current = [], start
    for _ in range(calls):
        found = schedule.next(current)
        if found is None:
            break
        out.append(found)
        current = found
    return out


def run_croniter(expr: str, start: dt.datetime, calls: int) -> list[dt.datetime]:
    seven = len(expr.split()) == 7
    iterator = croniter(expr, start, second_at_beginning=seven)
    return [iterator.get_next(dt.datetime) for _ in range(calls)]


def run_cronsim(expr: str, start: dt.datetime, calls: int) -> list[dt.datetime]:
    iterator = CronSim(expr, start)
    return [next(iterator) for _ in range(calls)]


PEERS: dict[str, Runner] = {"croniter": run_croniter, "cronsim": run_cronsim}


def timed(
    runner: Runner, expr: str, starts: list[dt.datetime], calls: int, repeats: int
) -> tuple[float | None, list[dt.datetime]]:
    """Median seconds for `calls` next() calls split over `starts`; None if unsupported."""
    per_start = calls // len(starts)
    samples, result = [], []
    for _ in range(repeats):
        try:
            began = time.perf_counter()
            result = [t for start in starts for t in runner(expr, start, per_start)]
            samples.append(time.perf_counter() - began)
        except Exception:
            return None, []
    return statistics.median(samples), result


def timed_parse(
    make: Callable[[str], object], expr: str, repeats: int, count: int = 1000
) -> float | None:
    samples = []
    for _ in range(repeats):
        try:
            began = time.perf_counter()
            for _ in range(count):
                make(expr)
            samples.append((time.perf_counter() - began) / count)
        except Exception:
            return None
    return statistics.median(samples)


def fmt_us(seconds: float | None, calls: int) -> str:
    return "n/a" if seconds is None else f"{seconds / calls * 1e6:8.2f}"


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeats", type=int, default=5)
    options.add_argument("--calls", type=int, default=1000)
    args = options.parse_args()
    print(
        f"# {dt.date.today()} {platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}; {args.calls} next() calls, median of {args.repeats}"
    )
    print(
        "| expression | start | evercron µs/call | croniter µs/call | cronsim µs/call "
        "| faster peer / evercron | same results |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    ratios: list[float] = []
    worst = math.inf
    for expr in EXPRESSIONS:
        for label, starts in (("naive", NAIVE_STARTS), ("Berlin DST", BERLIN_STARTS)):
            ours, ours_result = timed(run_evercron, expr, starts, args.calls, args.repeats)
            assert ours is not None
            peer_times, agree = {}, []
            for name, runner in PEERS.items():
                seconds, result = timed(runner, expr, starts, args.calls, args.repeats)
                peer_times[name] = seconds
                if seconds is not None:
                    same = [a.timestamp() for a in result] == [b.timestamp() for b in ours_result]
                    agree.append(f"{name}:{'yes' if same else 'NO'}")
            best_peer = min(t for t in peer_times.values() if t is not None)
            ratio = best_peer / ours
            ratios.append(ratio)
            worst = min(worst, ratio)
            print(
                f"| `{expr}` | {label} | {fmt_us(ours, args.calls)} | "
                f"{fmt_us(peer_times['croniter'], args.calls)} | "
                f"{fmt_us(peer_times['cronsim'], args.calls)} | {ratio:5.1f}x | "
                f"{' '.join(agree)} |"
            )
    geo = math.exp(statistics.fmean(math.log(r) for r in ratios))
    print(
        f"\nnext(): geometric mean {geo:.1f}x faster than the faster peer; "
        f"slowest case {worst:.1f}x"
    )
    print(
        "\n| expression | evercron parse µs | croniter() µs | cronsim() µs | croniter / evercron |"
    )
    print("|---|---:|---:|---:|---:|")
    parse_ratios = []
    start = dt.datetime(2024, 1, 1)
    for expr in EXPRESSIONS:
        ours = timed_parse(parse, expr, args.repeats)
        assert ours is not None
        seven = len(expr.split()) == 7
        theirs = timed_parse(
            lambda e, seven=seven: croniter(e, start, second_at_beginning=seven),
            expr,
            args.repeats,
        )
        sim = timed_parse(lambda e: CronSim(e, start), expr, args.repeats)
        ratio = (theirs or math.nan) / ours
        parse_ratios.append(ratio)
        print(
            f"| `{expr}` | {ours * 1e6:.2f} | {fmt_us(theirs, 1)} | {fmt_us(sim, 1)} "
            f"| {ratio:.1f}x |"
        )
    geo_parse = math.exp(statistics.fmean(math.log(r) for r in parse_ratios if not math.isnan(r)))
    print(
        f"\nparse: geometric mean {geo_parse:.1f}x faster than constructing croniter; "
        f"slowest case {min(r for r in parse_ratios if not math.isnan(r)):.1f}x"
    )


if __name__ == "__main__":
    main()
