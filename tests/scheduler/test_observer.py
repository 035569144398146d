"""What the scheduler tells its run observers (metrics, notifications): every recorded
end once, every start with its delay, every missed firing - against the store's rows."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path

from evercron.model import RunStatus, Trigger
from evercron.scheduler.observer import Observers, RunEnded, RunStarted
from evercron.store import Claim
from tests.scheduler.test_time import NOON, every, world


@dataclasses.dataclass
class Recorder:
    """A `RunObserver` that keeps what it is told."""

    started: list[RunStarted] = dataclasses.field(default_factory=list)
    ended: list[RunEnded] = dataclasses.field(default_factory=list)
    missed: Counter[str] = dataclasses.field(default_factory=Counter)

    def run_started(self, started: RunStarted) -> None:
        self.started.append(started)

    def run_ended(self, ended: RunEnded) -> None:
        self.ended.append(ended)

    def firings_missed(self, job: str, count: int) -> None:
        self.missed[job] += count


def test_every_row_is_told_once_and_missed_firings_are_counted(tmp_path: Path) -> None:
    recorder, second = Recorder(), Recorder()

    async def scenario() -> list[tuple[int, RunStatus, Trigger]]:
        job = every(
            "tick", "* * * * * * *", concurrency="allow", misfire="skip", misfire_grace="2.5s"
        )
        async with world(
            tmp_path, job, every("manual", "0 0 1 1 *"), observer=Observers([recorder, second])
        ) as w:
            await w.clock.jump(10.2)  # 12:00:01 .. 12:00:10 came due meanwhile
            await w.settle()
            await w.scheduler.trigger("manual")
            await w.settle()
            rows = await w.runs("tick") + await w.runs("manual")
        return [(r.id, r.status, r.trigger) for r in rows if r.status.finished]

    rows = asyncio.run(scenario())  # (the latest second's run may be running when read)
    told = [(e.run_id, e.status, e.trigger) for e in recorder.ended]
    assert len(told) == len(set(told)) and set(rows) <= set(told)  # each row once
    skipped = [row for row in rows if row[1] is RunStatus.SKIPPED]
    assert len(skipped) == 7 and recorder.missed == Counter({"tick": 7})
    ran = {run_id for run_id, status, _ in told if status is RunStatus.SUCCEEDED}
    assert {s.run_id for s in recorder.started} == ran
    for started in recorder.started:  # (the delay itself is real time: see test_launcher)
        assert (started.delay is None) == (started.trigger is Trigger.MANUAL)
    for ended in recorder.ended:
        assert (ended.duration is None) == (ended.status is RunStatus.SKIPPED)
    assert second == recorder  # every observer is told the same


def test_a_summary_row_counts_every_firing_it_stands_for(tmp_path: Path) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        job = every(
            "tick", "* * * * * * *", concurrency="allow", misfire="skip", misfire_grace="0s"
        )
        async with world(tmp_path, job, observer=recorder) as w:
            await w.clock.jump(3600.5)
            await w.settle()

    asyncio.run(scenario())
    assert recorder.missed["tick"] == 3600
    skipped = [e for e in recorder.ended if e.status is RunStatus.SKIPPED]
    assert len(skipped) == 101  # rows: 100 and one that stands for the rest


def test_a_kill_that_ends_a_gone_run_is_told(tmp_path: Path) -> None:
    recorder = Recorder()

    async def scenario() -> int:
        async with world(tmp_path, every("job", "0 0 1 1 *"), observer=recorder) as w:
            (stuck,) = await w.store.claim([Claim("job", NOON, Trigger.SCHEDULE)], "owner")
            assert stuck.run_id is not None
            await w.scheduler.kill(stuck.run_id)
            return stuck.run_id

    run_id = asyncio.run(scenario())
    (ended,) = recorder.ended
    assert (ended.run_id, ended.status, ended.duration) == (run_id, RunStatus.KILLED, None)
