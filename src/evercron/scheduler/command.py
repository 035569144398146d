"""A job's firing as the process runner's `Command`."""

from __future__ import annotations

import datetime as dt

from evercron.model import Job
from evercron.process import Command, Tracking
from evercron.process.leftovers import OWNER_VARIABLE


def command_for(
    job: Job,
    run_id: int,
    scheduled_at: dt.datetime,
    attempt: int,
    tracking: Tracking = "auto",
    owner: str | None = None,
) -> Command:
    """The command of one run of `job`, with the run's facts in its environment
    (`EVERCRON_JOB`, `EVERCRON_SCHEDULED_AT`, `EVERCRON_ATTEMPT`, and `EVERCRON_OWNER`
    naming the daemon process that starts it: with the run id, which the runner adds as
    `EVERCRON_RUN_ID`, unique on the machine)."""
    facts = {
        "EVERCRON_JOB": job.name,
        "EVERCRON_SCHEDULED_AT": scheduled_at.astimezone(dt.UTC).isoformat(),
        "EVERCRON_ATTEMPT": str(attempt),
    }
    if owner is not None:
        facts[OWNER_VARIABLE] = owner
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
