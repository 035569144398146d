"""Store records to API shapes."""

from __future__ import annotations

import datetime as dt
import functools

from evercron.cron import parse
from evercron.model import Run
from evercron.server.access import HIDDEN
from evercron.server.schemas import JobOut, NodeOut, RunOut
from evercron.store import Node, StoredJob


@functools.lru_cache(maxsize=4096)
def explanation(expression: str) -> str:
    """The engine's reading of an expression, remembered: explaining is most of the
    time of listing a thousand jobs (docs/BENCHMARKS.md)."""
    return parse(expression).explain()


def job_out(
    stored: StoredJob, next_fire: dt.datetime | None, *, show_secrets: bool = True
) -> JobOut:
    """The API form of a stored job; every time in UTC (a zone's jobs too). Without
    `show_secrets` the values of `env` are hidden (its names stay)."""
    job = stored.job
    fields = job.to_mapping()
    if not show_secrets:
        fields["env"] = dict.fromkeys(fields["env"], HIDDEN)
    return JobOut(
        **fields,
        paused=stored.paused,
        source=job.source,
        explanation=explanation(str(job.schedule)),
        next_fire_at=next_fire.astimezone(dt.UTC) if next_fire is not None else None,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def run_out(run: Run) -> RunOut:
    """The API form of a run."""
    return RunOut(
        id=run.id,
        job=run.job,
        trigger=run.trigger.value,
        scheduled_at=run.scheduled_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=run.status.value,
        exit_code=run.exit_code,
        signal=run.signal,
        attempt=run.attempt,
        pid=run.pid,
        cpu_user=run.cpu_user,
        cpu_system=run.cpu_system,
        max_rss_kb=run.max_rss_kb,
        output_bytes=run.output_bytes,
        output_truncated=run.output_truncated,
        error=run.error,
        retry_of=run.retry_of,
        node=run.node,
        fence=run.fence,
    )


def node_out(node: Node) -> NodeOut:
    """The API form of a node."""
    return NodeOut(
        name=node.name,
        tags=list(node.tags),
        state=node.state.value,
        heartbeat_at=node.heartbeat_at,
        version=node.version,
        pid=node.pid,
        running=list(node.running),
        lease=node.lease,
        max_running=node.max_running,
    )
