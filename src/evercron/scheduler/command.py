"""A job's firing as the process runner's `Command`."""

from __future__ import annotations

import datetime as dt
import logging

from evercron.model import Job
from evercron.process import Command, Tracking
from evercron.process.cgroup import limit_support
from evercron.process.controllers import MAX_MEMORY, MAX_PROCESSES, format_limit
from evercron.process.leftovers import OWNER_VARIABLE
from evercron.process.spec import DEFAULT_MAX_PROCESSES

log = logging.getLogger("evercron.jobs")


def command_for(
    job: Job,
    run_id: int,
    scheduled_at: dt.datetime,
    attempt: int,
    tracking: Tracking = "auto",
    owner: str | None = None,
    node: str | None = None,
    fence: int | None = None,
) -> Command:
    """The command of one run of `job`, with the run's facts in its environment
    (`EVERCRON_JOB`, `EVERCRON_SCHEDULED_AT`, `EVERCRON_ATTEMPT`, `EVERCRON_OWNER`
    naming the daemon process that starts it: with the run id, which the runner adds as
    `EVERCRON_RUN_ID`, unique on the machine; and `EVERCRON_NODE` and `EVERCRON_FENCE`
    when known, so a command can fence its own side effects). Tracked by session (no
    cgroup), it goes without the job's limits: only for jobs that keep the defaults
    (`own_limits`)."""
    cgroup = tracking == "auto"
    facts = {
        "EVERCRON_JOB": job.name,
        "EVERCRON_SCHEDULED_AT": scheduled_at.astimezone(dt.UTC).isoformat(),
        "EVERCRON_ATTEMPT": str(attempt),
    }
    if owner is not None:
        facts[OWNER_VARIABLE] = owner
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
        max_processes=job.max_processes if cgroup else None,
        max_memory=job.max_memory if cgroup else None,
    )


def own_limits(job: Job) -> bool:
    """Whether `job` sets a limit of its own (not only the default `max_processes`)."""
    return job.max_processes != DEFAULT_MAX_PROCESSES or job.max_memory is not None


class UnenforcedLimits:
    """Tells, once per job and value, of each limit a job sets that this machine cannot
    enforce (its runs go without it). The default `max_processes` is not the job's own
    choice: the daemon's start-up line about limits covers it."""

    def __init__(self) -> None:
        self._told: set[tuple[str, int, int | None]] = set()

    def check(self, job: Job) -> None:
        """Log what of `job`'s limits is not enforced here, unless told already."""
        key = (job.name, job.max_processes, job.max_memory)
        if key in self._told:
            return
        self._told.add(key)
        own_cap = job.max_processes != DEFAULT_MAX_PROCESSES
        chosen = {MAX_PROCESSES: job.max_processes if own_cap else None, MAX_MEMORY: job.max_memory}
        for setting, reason in limit_support().unenforced(chosen).items():
            value = chosen[setting]
            assert value is not None
            log.warning(
                "job %s: %s = %s is not enforced on this machine (%s); its runs go without it",
                job.name,
                setting,
                format_limit(setting, value),
                reason,
            )
