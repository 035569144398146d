"""The daemon as the HTTP handlers see it (`evercron.server.context.DaemonControl`)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

from evercron.daemon import state
from evercron.daemon.upgrade import Handover, UpgradeBusy, UpgradeError
from evercron.server.context import GenerationInfo, UpgradeDone, UpgradeRefused
from evercron.store import Store


class Control:
    """Status, stop and upgrade of one daemon process, for requests."""

    def __init__(
        self,
        store: Store,
        state_dir: Path,
        owner: str,
        me: Callable[[], GenerationInfo],
        stop: Callable[[], None],
        upgrade: Callable[[], Awaitable[Handover]],
        readiness: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._store = store
        self._state_dir = state_dir
        self._owner = owner
        self._me = me
        self._stop = stop
        self._upgrade = upgrade
        self._readiness = readiness
        self.draining = False
        """Set once this process handed over: responses close, live streams end."""

    def request_stop(self) -> None:
        """Begin a graceful shutdown (as SIGTERM)."""
        self._stop()

    def readiness(self) -> str | None:
        """Why this daemon should not be sent work now (`/readyz`), or None."""
        return self._readiness()

    async def upgrade(self) -> UpgradeDone:
        """Hot-upgrade (see `Daemon.upgrade`)."""
        try:
            handover = await self._upgrade()
        except UpgradeBusy as error:
            raise UpgradeRefused(str(error), busy=True) from None
        except UpgradeError as error:
            raise UpgradeRefused(str(error), busy=False) from None
        return UpgradeDone(handover.pid, handover.generation, handover.seconds)

    async def generations(self) -> list[GenerationInfo]:
        """This process first, then every other live daemon process of the state dir
        (serving, starting, draining), each with its running runs."""
        found = [self._me()]
        others = await asyncio.to_thread(state.living_generations, self._state_dir)
        for owner, info in others.items():
            if owner == self._owner:
                continue
            theirs = await self._store.running(owner)
            try:
                found.append(
                    GenerationInfo(
                        pid=int(info["pid"]),
                        generation=int(info.get("generation", 0)),
                        role=str(info.get("role", "serving")),
                        version=str(info.get("version", "")),
                        started_at=dt.datetime.fromisoformat(str(info["started_at"])),
                        running_runs=sorted(running.run.id for running in theirs),
                    )
                )
            except (KeyError, ValueError, TypeError):
                continue  # a file being rewritten: shown next time
        order = {"serving": 0, "starting": 1, "draining": 2}
        found.sort(key=lambda g: (order.get(g.role, 0), -g.generation))
        return found
