"""ForkGate: forks run side by side, a visit to a run's cgroup runs alone."""

from __future__ import annotations

import threading
import time

from evercron.process.fork_gate import ForkGate


def test_forks_share_the_gate_and_a_visit_waits_for_them() -> None:
    gate = ForkGate()
    order: list[str] = []
    with gate.shared(), gate.shared():  # two forks at once: no deadlock
        visitor = threading.Thread(target=lambda: _visit(gate, order))
        visitor.start()
        time.sleep(0.1)
        order.append("forks done")
    visitor.join(5)
    assert order == ["forks done", "visit"]


def test_a_fork_waits_while_the_process_visits_a_group() -> None:
    gate = ForkGate()
    order: list[str] = []
    inside = threading.Event()
    leave = threading.Event()

    def long_visit() -> None:
        with gate.exclusive():
            inside.set()
            leave.wait(5)
            order.append("visit")

    def fork() -> None:
        with gate.shared():
            order.append("fork")

    visitor = threading.Thread(target=long_visit)
    visitor.start()
    inside.wait(5)
    forker = threading.Thread(target=fork)
    forker.start()
    time.sleep(0.1)
    assert order == []  # the fork waits while the process visits a group
    leave.set()
    visitor.join(5)
    forker.join(5)
    assert order == ["visit", "fork"]


def _visit(gate: ForkGate, order: list[str]) -> None:
    with gate.exclusive():
        order.append("visit")
