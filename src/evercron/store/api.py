"""The one store interface the rest of evercron depends on.

Every backend (the embedded SQLite file, PostgreSQL for several nodes) implements
`Store` and passes the same contract suite (`tests/store/test_contract.py`). Callers hold
a `Store`, never a backend class: only `evercron.store.open_store` knows them.

Rules every backend keeps:
- Every method is a coroutine and never blocks the event loop.
- The claim rule: a firing is owned by whoever inserts its run row, keyed by (job,
  scheduled_at, attempt); no other de-duplication exists anywhere.
- A claim is durable before its call returns: nothing is started for a firing the store
  could still forget.
- Calls made one after another by the same caller (each awaited) take effect in that
  order; calls not awaited have no order.
- A passing failure (disk full, lock held, connection lost) raises `StoreUnavailable`
  and changed nothing; `evercron.store.retry.persist` retries such calls where losing
  them would lose a fact (a claim, a result).
- Notification events are written in the transaction of the fact they report (a result,
  a skipped claim, a start): both are stored or neither. Delivery claims expire on the
  store's clock, never a caller's, so that each delivery is sent by one process at a time
  whatever the callers' clocks say.
- Metric totals are kept per node (the daemon processes sharing one state dir): each
  node's /metrics shows what its own processes counted; retention never prunes them.
- Nodes: a store is opened for one node (its name goes on its runs). Leases are judged
  on the database's clock. A store only one node can use (SQLite) keeps the same
  protocol trivially: its one node is always alive and nothing is ever reaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol

from evercron.model import Job, Run, RunStatus
from evercron.store.records import (
    BrokenJob,
    Claim,
    Claimed,
    Delivery,
    DeliveryState,
    Disagreement,
    EventPolicy,
    FanOut,
    JobSchedule,
    LostRun,
    MadeDelivery,
    Node,
    NodeInfo,
    OutboxEvent,
    RunEnd,
    RunMark,
    RunningRun,
    RunQuery,
    StoredChunk,
    StoredJob,
    Total,
    TriggerRequest,
)


class Store(Protocol):
    """Jobs, runs (the claim of each firing), output and events."""

    @property
    def description(self) -> str:
        """Where the data lives, for logs and `status` (never a password)."""
        ...

    @property
    def shared(self) -> bool:
        """Whether other nodes may use this store at the same time: then they change
        jobs and runs behind this node's back, and leases and reaping matter. A store
        only one node can use (SQLite) changes only through this node."""
        ...

    async def migrate(self, *, expand_only: bool = False) -> int:
        """Bring the schema up to this version's; the version it is at now. With
        `expand_only` (an older release still uses the store) stop before the first
        contract migration. Raises `StoreError` for a store contracted past what this
        release reads (see `evercron.store.schema`)."""
        ...

    async def close(self) -> None:
        """Finish queued calls and let go of the database."""
        ...

    # -- jobs ------------------------------------------------------------------------

    async def list_jobs(self) -> list[StoredJob]:
        """Every readable job, by name."""
        ...

    async def broken_jobs(self) -> list[BrokenJob]:
        """Stored job rows that no longer read as jobs, by name."""
        ...

    async def get_job(self, name: str) -> StoredJob | None:
        """The job called `name`, or None."""
        ...

    async def create_job(self, job: Job, now: dt.datetime) -> bool:
        """Add a job; False (nothing changed) when the name is taken."""
        ...

    async def put_job(self, job: Job, now: dt.datetime) -> bool:
        """Create or replace a job, keeping its paused flag; True when it was created."""
        ...

    async def update_job(self, job: Job, now: dt.datetime, was: dt.datetime) -> bool:
        """Replace the definition of the stored job `job.name` (keeping its paused flag),
        only while it is unchanged since it read as `was` (its `updated_at`); False when
        it was deleted or changed meanwhile, so a read-modify-write can neither bring a
        deleted job back nor undo a concurrent change."""
        ...

    async def delete_job(self, name: str) -> bool:
        """Remove a job (its runs stay in the history); True when it existed."""
        ...

    async def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume a job; True when it exists."""
        ...

    async def reconcile_jobs(self, jobs: Sequence[Job], now: dt.datetime) -> list[str]:
        """Make the jobs that came from files exactly `jobs` (API-made jobs stay unless
        `jobs` names them), in one transaction; the names added, changed or removed."""
        ...

    async def job_schedules(self) -> list[JobSchedule]:
        """Every stored job's name, schedule text, time zone and paused flag, by name:
        what metrics need, without reading whole definitions (a row without a schedule
        text is left out)."""
        ...

    # -- firings and runs ------------------------------------------------------------

    async def claim(self, claims: Sequence[Claim], owner: str) -> list[Claimed]:
        """Own or record each firing (see `Claim`), in one transaction, in order. A
        firing recorded `skipped` makes a `missed` event when one is wanted."""
        ...

    async def mark_started(
        self,
        run_id: int,
        pid: int | None,
        pid_start_ticks: int | None,
        started_at: dt.datetime,
        cgroups: Sequence[str] = (),
    ) -> None:
        """Record the process of a claimed run, and the cgroup directories it runs in
        (`RunningRun.cgroups`: what ends a lost run's whole tree); with its `started`
        event when one is wanted (at most one per run)."""
        ...

    async def finish(self, run_id: int, end: RunEnd, fence: int | None = None) -> bool:
        """Record how a running run ended, with the events it makes that are wanted;
        False (nothing changed) when it was not running any more (already finished,
        marked lost) or, with `fence`, when the run no longer has that fence (it was
        fenced off: its result is not the run's)."""
        ...

    async def get_run(self, run_id: int) -> Run | None:
        """The run with this id, or None."""
        ...

    async def list_runs(self, query: RunQuery) -> list[Run]:
        """Runs matching `query`, newest first."""
        ...

    async def latest_runs(self, per_job: int) -> dict[str, list[RunMark]]:
        """The newest `per_job` runs of every job, newest first, by job name, briefly
        (a thousand jobs with long histories must answer in milliseconds)."""
        ...

    async def job_counts(self) -> tuple[int, int]:
        """How many jobs there are, and how many of them are paused."""
        ...

    async def running(self, owner: str | None = None, node: str | None = None) -> list[RunningRun]:
        """Runs still marked running (of one owner, of one node, or all)."""
        ...

    async def recent_status_counts(self, last: int) -> dict[RunStatus, int]:
        """How many of the newest `last` runs (by id) have each status (those with none
        left out)."""
        ...

    async def last_scheduled(self, job: str) -> dt.datetime | None:
        """The latest scheduled time recorded for `job` by its schedule (run, skipped or
        caught up): where catching up after an outage starts."""
        ...

    async def request_kill(self, run_id: int, at: dt.datetime) -> bool:
        """Ask the owner of a running run to end it; False when it is not running."""
        ...

    async def request_trigger(self, job: str, at: dt.datetime) -> int:
        """Ask the nodes that can run `job` for a manual run (a `TriggerRequest`, woken
        at once on the nodes that listen); its id."""
        ...

    async def open_trigger_requests(self, since: dt.datetime) -> list[TriggerRequest]:
        """The requests made from `since` on that no run answered yet, oldest first."""
        ...

    async def trigger_request(self, request_id: int) -> TriggerRequest | None:
        """One request as it is now (None once withdrawn)."""
        ...

    async def withdraw_trigger_request(self, request_id: int) -> bool:
        """Remove a request; True when no run had answered it (none will now)."""
        ...

    async def kill_requests(self, owner: str) -> list[int]:
        """Running runs of `owner` that someone asked to end."""
        ...

    async def boot_time(self, boot_id: str, booted_at: dt.datetime) -> dt.datetime:
        """The boot time first recorded for `boot_id` (`booted_at` if this is the first
        call for it): `@reboot` firings are keyed by it."""
        ...

    # -- output ----------------------------------------------------------------------

    async def append_output(self, run_id: int, chunks: Iterable[StoredChunk]) -> None:
        """Store output chunks of one run (a chunk already stored is ignored)."""
        ...

    async def read_output(
        self, run_id: int, after: int = -1, limit: int = 1000
    ) -> list[StoredChunk]:
        """Stored chunks of a run whose offset is greater than `after`, in order."""
        ...

    async def tail_start(self, run_id: int, tail_bytes: int) -> int:
        """Where to read the last `tail_bytes` of a run's stored output from: the offset
        of the chunk holding the first of them (0 when the output is shorter)."""
        ...

    # -- the notification outbox -----------------------------------------------------

    async def want_events(self, policy: EventPolicy) -> None:
        """Write these notification events from now on (none until called, and then no
        run costs more than before). Each is written in the transaction of its fact:
        `finish` (`succeeded`, `recovered`, `failed` for failed, timed_out and killed,
        `lost`, `missed` for skipped), `claim` (`missed` for a firing recorded skipped),
        `mark_started` (`started`) and `add_overdue_event` (`overdue`). Which ones a
        result makes is `evercron.model.result_events`, given the status of the job's
        latest earlier run (by id) that ended succeeded, failed, timed_out or killed."""
        ...

    async def add_overdue_event(self, run_id: int) -> bool:
        """Write the `overdue` event of a running run (at the store's time); False when
        it is not running, has one already, or overdue events are not wanted."""
        ...

    async def undispatched_events(self, limit: int = 100) -> list[OutboxEvent]:
        """Events not fanned out to channels yet, oldest first."""
        ...

    async def dispatch_events(
        self, fan_outs: Sequence[FanOut], at: dt.datetime
    ) -> list[MadeDelivery]:
        """Fan events out, in one transaction: a delivery per event and channel, and the
        event marked dispatched. At most one delivery per event and channel, however
        often (and by however many processes) this is called: the deliveries made are
        returned, none for those that existed. The hour of `at` (UTC) counts towards
        each channel's `max_per_hour`: the delivery after that many in the hour (not
        counting suppressed ones) is a `summary`, later ones are `suppressed`."""
        ...

    async def claim_deliveries(self, owner: str, lease: float, limit: int = 50) -> list[Delivery]:
        """Take up to `limit` pending deliveries that are due, oldest first, for `owner`
        to send: nobody else gets them for `lease` seconds of the store's clock (after
        that, an owner that died while sending has left them to the next). Not a lock
        held while sending."""
        ...

    async def settle_delivery(
        self,
        delivery_id: int,
        owner: str,
        state: DeliveryState,
        *,
        outcome: str | None = None,
        error: str | None = None,
        retry_in: float | None = None,
    ) -> bool:
        """Record an attempt of a delivery `owner` claimed and release it: `sent` (with
        the receiver's answer as `outcome`), `pending` again (failed with `error`, due
        again `retry_in` seconds from now on the store's clock) or `failed` (given up).
        False, and nothing written, when `owner` no longer holds the claim."""
        ...

    async def list_deliveries(
        self, limit: int = 100, channel: str | None = None, state: DeliveryState | None = None
    ) -> list[Delivery]:
        """Deliveries with their events, newest first, optionally of one channel and/or
        in one state."""
        ...

    async def prune_notifications(self, older_than: dt.datetime) -> int:
        """Delete settled deliveries made before `older_than`, and events made before it
        that have no delivery left; pending ones stay whatever their age. How many
        deliveries went."""
        ...

    # -- metric totals ---------------------------------------------------------------

    async def save_metric_totals(self, node: str, owner: str, totals: Mapping[str, Total]) -> None:
        """Set the absolute values of the series `owner` (one daemon process of `node`)
        counted, by series key."""
        ...

    async def metric_totals(self, node: str, exclude: Collection[str] = ()) -> dict[str, float]:
        """Each series' total over `node`'s owners not in `exclude` (merged ones
        included unless `MERGED` is excluded): summed, or the latest for `max` series."""
        ...

    async def merged_metric_totals(self, node: str) -> dict[str, float]:
        """The totals `compact_metric_totals` merged for `node` (the owner `MERGED`)."""
        ...

    async def compact_metric_totals(self, node: str, keep: Collection[str]) -> int:
        """Merge the series of `node`'s owners not in `keep` (processes that are gone)
        into `MERGED`, in one transaction, so that `metric_totals` gives the same before
        and after; how many owners were merged."""
        ...

    # -- events and retention --------------------------------------------------------

    async def add_event(self, kind: str, detail: str, at: dt.datetime) -> None:
        """Record something the daemon did (start, stop, lost runs, upgrades)."""
        ...

    async def prune(self, keep_per_job: int, older_than: dt.datetime) -> int:
        """Delete finished runs (and their output) beyond the newest `keep_per_job` of
        each job that also ended before `older_than`, and trigger requests made before
        it (answered or not: their askers gave up long ago); how many runs went."""
        ...

    # -- nodes -----------------------------------------------------------------------

    async def join(self, node: NodeInfo) -> None:
        """Enter (or re-enter) the cluster as `node`, alive from now; a drain stays.
        Raises `StoreError` when a live node elsewhere (another home) has the name."""
        ...

    async def renew(self, node: NodeInfo) -> list[Node] | None:
        """Renew `node`'s lease - one statement renews the node and so all its runs -
        and return every node; None when the name is no longer this node's."""
        ...

    async def nodes(self) -> list[Node]:
        """Every node the store knows, by name."""
        ...

    async def set_drained(self, name: str, drained: bool) -> bool:
        """Ask a node to stop claiming (or to claim again); False for an unknown node."""
        ...

    async def leave(self, node: NodeInfo) -> bool:
        """Mark `node` left, if it is still this process's and has no running runs."""
        ...

    async def reap(self, grace: float, retryable: Mapping[str, int], owner: str) -> list[LostRun]:
        """Mark `lost` every running run of a node whose lease expired more than `grace`
        seconds ago (never within a lease of a database restart). For a job in
        `retryable` (job name -> its `retries`) whose lost attempt may be retried, claim
        the next attempt for `owner` in the same transaction."""
        ...

    async def disagreements(self) -> list[Disagreement]:
        """Live nodes whose files define a job otherwise than the definition in force."""
        ...

    async def listen(self, on_hint: Callable[[str, str], None]) -> None:
        """Until cancelled, call `on_hint(kind, detail)` for each change another node
        announced ("job" name, "kill" run id and node, "node" name), and
        `on_hint("resync", "")` whenever hints may have been missed (at the start, after
        a lost connection). Hints are only hints: callers also poll."""
        ...
