"""Status, stop, upgrade, health and metrics."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from evercron import __version__
from evercron.model import RunStatus
from evercron.scheduler.timing import local_zone
from evercron.server.access import access_of
from evercron.server.context import UpgradeRefused, context_of
from evercron.server.convert import node_out
from evercron.server.errors import ApiError
from evercron.server.schemas import DisagreementOut, ErrorOut, Generation, StatusOut, UpgradeOut
from evercron.store import RunQuery

router = APIRouter(tags=["daemon"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 409)}


@router.get("/api/v1/status", response_model=StatusOut, responses=_ERRORS)
async def status(request: Request) -> StatusOut:
    """Version, uptime, jobs, running runs and the daemon generations: the serving one
    and any still draining after an upgrade, each with its running runs."""
    context = context_of(request)
    jobs, paused = await context.store.job_counts()
    running = sorted(context.jobs.running_runs())
    now = dt.datetime.now(dt.UTC)
    generations = [
        Generation(
            pid=info.pid,
            generation=info.generation,
            role=_role(info.role),
            version=info.version,
            started_at=info.started_at,
            running_runs=info.running_runs,
        )
        for info in await context.daemon.generations()
    ]
    return StatusOut(
        version=__version__,
        pid=os.getpid(),
        started_at=context.started_at,
        uptime_seconds=(now - context.started_at).total_seconds(),
        jobs=jobs,
        paused_jobs=paused,
        running_runs=running,
        state_dir=context.state_dir,
        generations=generations,
        timezone=str(local_zone()),
        access=access_of(request),
        node=context.node,
        store=context.store.description,
        nodes=[node_out(node) for node in await context.store.nodes()],
        disagreements=[
            DisagreementOut(job=d.job, node=d.node, applied_by=d.applied_by)
            for d in await context.store.disagreements()
        ],
    )


def _role(text: object) -> Literal["serving", "draining", "starting"]:
    if text == "draining":
        return "draining"
    return "starting" if text == "starting" else "serving"


@router.post("/api/v1/stop", status_code=202, responses=_ERRORS)
async def stop(request: Request) -> dict[str, str]:
    """Shut down gracefully (as SIGTERM): running jobs may finish within shutdown_grace."""
    context_of(request).daemon.request_stop()
    return {"status": "stopping"}


@router.post(
    "/api/v1/upgrade",
    response_model=UpgradeOut,
    responses={**_ERRORS, 503: {"model": ErrorOut}},
)
async def upgrade(request: Request) -> UpgradeOut:
    """Hot upgrade: start a new daemon process from the code and config on disk and hand
    over to it once it serves. Answers when it is done: 200 with the new process, 409
    while another upgrade is starting, 503 with the new process's error when it failed
    (this process then keeps serving)."""
    context = context_of(request)
    try:
        handover = await context.daemon.upgrade()
    except UpgradeRefused as error:
        if error.busy:
            raise ApiError(409, str(error)) from None
        raise ApiError(503, f"upgrade failed: {error}") from None
    return UpgradeOut(
        status="upgraded",
        pid=handover.pid,
        generation=handover.generation,
        previous_pid=os.getpid(),
        handover_seconds=round(handover.seconds, 3),
    )


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness, without authentication."""
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    context = context_of(request)
    registry = CollectorRegistry()
    jobs = await context.store.list_jobs()
    Gauge("evercron_jobs", "Jobs defined", registry=registry).set(len(jobs))
    Gauge("evercron_jobs_paused", "Jobs paused", registry=registry).set(
        sum(1 for j in jobs if j.paused)
    )
    Gauge("evercron_runs_running", "Runs running in this process", registry=registry).set(
        len(context.jobs.running_runs())
    )
    by_status = Gauge(
        "evercron_recent_runs", "Runs among the last 1000 by status", ["status"], registry=registry
    )
    recent = await context.store.list_runs(RunQuery(limit=1000))
    for run_status in RunStatus:
        by_status.labels(run_status.value).set(sum(1 for r in recent if r.status is run_status))
    Gauge("evercron_uptime_seconds", "Seconds since the daemon started", registry=registry).set(
        (dt.datetime.now(dt.UTC) - context.started_at).total_seconds()
    )
    lag = context.lag
    Gauge(
        "evercron_firing_lag_seconds",
        "How late the latest scheduled firing started, in seconds",
        registry=registry,
    ).set(lag.last_lag)
    Gauge(
        "evercron_firings_late",
        f"Scheduled firings that started more than {lag.threshold:g}s late (this process)",
        registry=registry,
    ).set(lag.late_total)
    missed = Counter(
        "evercron_firings_missed",
        "Firings recorded skipped because they could not run in time (this process)",
        ["job_name"],
        registry=registry,
    )
    for name in sorted({stored.job.name for stored in jobs} | set(lag.missed_by_job)):
        missed.labels(name).inc(lag.missed_by_job.get(name, 0))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
