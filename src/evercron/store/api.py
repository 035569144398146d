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
- Nodes: a store is opened for one node (its name goes on its runs). Leases are judged
  on the database's clock. A store only one node can use (SQLite) keeps the same
  protocol trivially: its one node is always alive and nothing is ever reaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from evercron.model import Job, Run
from evercron.store.records import (
    BrokenJob,
    Claim,
    Claimed,
    Disagreement,
    LostRun,
    Node,
    NodeInfo,
    RunEnd,
    RunMark,
    RunningRun,
    RunQuery,
    StoredChunk,
    StoredJob,
)


class Store(Protocol):
    """Jobs, runs (the claim of each firing), output and events."""

    @property
    def description(self) -> str:
        """Where the data lives, for logs and `status` (never a password)."""
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

    # -- firings and runs ------------------------------------------------------------

    async def claim(self, claims: Sequence[Claim], owner: str) -> list[Claimed]:
        """Own or record each firing (see `Claim`), in one transaction, in order."""
        ...

    async def mark_started(
        self, run_id: int, pid: int | None, pid_start_ticks: int | None, started_at: dt.datetime
    ) -> None:
        """Record the process of a claimed run."""
        ...

    async def finish(self, run_id: int, end: RunEnd, fence: int | None = None) -> bool:
        """Record how a running run ended; False (nothing changed) when it was not
        running any more (already finished, marked lost) or, with `fence`, when the run
        no longer has that fence (it was fenced off: its result is not the run's)."""
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

    async def last_scheduled(self, job: str) -> dt.datetime | None:
        """The latest scheduled time recorded for `job` by its schedule (run, skipped or
        caught up): where catching up after an outage starts."""
        ...

    async def request_kill(self, run_id: int, at: dt.datetime) -> bool:
        """Ask the owner of a running run to end it; False when it is not running."""
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

    # -- events and retention --------------------------------------------------------

    async def add_event(self, kind: str, detail: str, at: dt.datetime) -> None:
        """Record something the daemon did (start, stop, lost runs, upgrades)."""
        ...

    async def prune(self, keep_per_job: int, older_than: dt.datetime) -> int:
        """Delete finished runs (and their output) beyond the newest `keep_per_job` of
        each job that also ended before `older_than`; how many went."""
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
