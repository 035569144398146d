"""Forks and visits to run cgroups kept apart (see `cgroup.py`): a child forked while
this process visits a run's cgroup would be born in that group."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ForkGate:
    """Keeps forks and visits apart: any number of forks (or group kills) may happen at
    once, but never while this process visits a run's cgroup to fork a child there - a
    child forked elsewhere would be born in that group. Visitors wait for the forks under
    way and go first after them, so a stream of forks cannot starve a visit."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._forks = 0
        self._visiting = False
        self._visitors_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold while forking (or signalling a group) anywhere but inside a visit."""
        with self._condition:
            while self._visiting or self._visitors_waiting:
                self._condition.wait()
            self._forks += 1
        try:
            yield
        finally:
            with self._condition:
                self._forks -= 1
                if not self._forks:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold alone: no other fork or group signal meanwhile."""
        with self._condition:
            self._visitors_waiting += 1
            while self._visiting or self._forks:
                self._condition.wait()
            self._visitors_waiting -= 1
            self._visiting = True
        try:
            yield
        finally:
            with self._condition:
                self._visiting = False
                self._condition.notify_all()


FORK_GATE = ForkGate()
