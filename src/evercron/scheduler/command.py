"""A job's firing as the process runner's `Command`."""

from __future__ import annotations

import datetime as dt

from evercron.model import Job
from evercron.process import Command, Tracking


def command_for(
    job: Job,
    run_id: int,
    scheduled_at: dt.datetime,
    attempt: int,
    tracking: Tracking = "auto",
    node: str | None = None,
    fence: int | None = None,
) -> Command:
    """The command of one run of `job`, with the run's facts in its environment
    (`EVERCRON_JOB`, `EVERCRON_SCHEDULED_AT`, `EVERCRON_ATTEMPT`, and `EVERCRON_NODE`
    and `EVERCRON_FENCE` when known, so a command can fence its own side effects; the
    runner adds `EVERCRON_RUN_ID`)."""
    facts = {
        "EVERCRON_JOB": job.name,
        "EVERCRON_SCHEDULED_AT": scheduled_at.astimezone(dt.UTC).isoformat(),
        "EVERCRON_ATTEMPT": str(attempt),
    }
    if node is not None:
        facts["EVERCRON_NODE"] = node
    if fence is not None:
        facts["EVERCRON_FENCE"] = str(fence)
    return Command(
        job.command,
        shell=job.shell,
        cwd=job.cwd,
        env={**job.env, **facts},
        umask=job.umask,
        nice=job.nice,
        limits=dict(job.limits),
        user=job.user,
        group=job.group,
        timeout=job.timeout,
        kill_grace=job.kill_grace,
        max_output=job.max_output,
        kill_mode="main" if job.kill_mode == "main" else "group",
        run_id=str(run_id),
        tracking=tracking,
    )
