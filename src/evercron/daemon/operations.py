"""What one daemon process tells its operators: notifications (the dispatcher and the
overdue watch) and per-job metrics, built from the configuration and told about runs by
the scheduler as its run observers."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from evercron.config import Config
from evercron.metrics import RunMetrics
from evercron.notify.dispatcher import Dispatcher
from evercron.notify.overdue import OverdueWatch
from evercron.scheduler.observer import Observers, RunEnded
from evercron.store import Store


def node_name() -> str:
    """The name this daemon goes by in notifications, metric totals and JSON log lines:
    the host's name."""
    return socket.gethostname()


@dataclass(frozen=True)
class Operations:
    """The notification and metrics parts of one daemon process."""

    node: str
    counts: RunMetrics
    dispatcher: Dispatcher
    overdue: OverdueWatch
    observer: Observers
    """What the scheduler tells about runs: all three above."""

    @classmethod
    def of(cls, config: Config, store: Store, owner: str, node: str) -> Operations:
        """The parts for `config`'s channels, counting as `owner` of `node`."""
        counts = RunMetrics(owner, node)
        dispatcher = Dispatcher(
            store,
            owner,
            config.channels,
            config.smtp,
            config.settings.public_url,
            counted=counts.notification,
        )
        overdue = OverdueWatch(store, dispatcher.wake)
        return cls(node, counts, dispatcher, overdue, Observers([counts, dispatcher, overdue]))

    async def start(self, store: Store) -> None:
        """Have the store write the events the channels want (before any run ends)."""
        await store.want_events(self.dispatcher.policy(self.node))

    async def note_lost(self, store: Store, run_ids: Iterable[int]) -> None:
        """Tell the observers about runs just marked lost (they count in the metrics;
        their `lost` events are to be sent)."""
        for run_id in run_ids:
            run = await store.get_run(run_id)
            if run is not None and run.finished_at is not None:
                self.observer.run_ended(
                    RunEnded(run.job, run.id, run.trigger, run.status, run.finished_at)
                )

    async def close(self, store: Store) -> None:
        """Stop watching for overdue runs and save the last counts (the store is still
        open; the dispatcher's task is ended by then)."""
        await self.overdue.close()
        await self.counts.flush(store)
