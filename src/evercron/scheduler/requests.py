"""Manual runs of a job this node cannot run (it lacks a tag of the job's `run_on`),
asked of the nodes that can: the asking node writes a trigger request to the store and
waits for the run that answers it; every node that can run the job answers open
requests through the one firing path, and the store lets only the first answer stand
(`Claim.request`). A request nobody answers within `FORWARD_PATIENCE` is withdrawn, and
the asking node records the firing `skipped` with the reason, so nothing is silent.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from evercron.model import Trigger
from evercron.scheduler.clock import Clock
from evercron.scheduler.firing import Firing, FiringPath
from evercron.scheduler.placement import Cluster
from evercron.store import Store, StoredJob

log = logging.getLogger("evercron.scheduler")

FORWARD_PATIENCE = 5.0
"""Seconds a node waits for another node to answer its trigger request."""
REQUEST_LIFETIME = 60.0
"""Seconds a request stays open to answer (its asker gave up long before; a request
whose asker died is not answered by a node that joins much later)."""
_LOOK_EVERY = 0.05  # seconds between looks at the request while waiting for its run


def forwarded(cluster: Cluster, job: StoredJob) -> bool:
    """Whether a manual run of `job` is asked of other nodes: this node cannot run it
    and a live one can."""
    return not cluster.fits(job.job) and bool(cluster.live_with(job.job.run_on))


async def forward(store: Store, clock: Clock, job: str, at: dt.datetime) -> int | None:
    """Ask the nodes that can run `job` for a manual run at `at`; the id of the run
    that answered (started or recorded skipped), or None when none answered in time
    (the request is then withdrawn: none will)."""
    request = await store.request_trigger(job, at)
    deadline = clock.monotonic() + FORWARD_PATIENCE
    while True:
        found = await store.trigger_request(request)
        if found is not None and found.run_id is not None:
            await store.withdraw_trigger_request(request)  # answered: the row is done
            return found.run_id
        if clock.monotonic() >= deadline and await store.withdraw_trigger_request(request):
            return None
        await clock.sleep(_LOOK_EVERY)


async def answer_requests(
    store: Store,
    path: FiringPath,
    jobs: Callable[[str], StoredJob | None],
    cluster: Cluster,
    clock: Clock,
) -> None:
    """Start the open requests' runs of the jobs this node can run (unless it is
    draining or stopping: then another node answers)."""
    if path.closed or cluster.drained:
        return
    since = dt.datetime.fromtimestamp(clock.time() - REQUEST_LIFETIME, dt.UTC)
    for request in await store.open_trigger_requests(since):
        stored = jobs(request.job)
        if stored is None or not cluster.fits(stored.job):
            continue
        firing = Firing(request.job, request.requested_at, Trigger.MANUAL, request=request.id)
        (outcome,) = await path.fire([firing])
        if outcome.run_id is not None:
            log.info(
                "run %s of %s started here, asked for through node %s",
                outcome.run_id,
                request.job,
                request.by_node,
            )
