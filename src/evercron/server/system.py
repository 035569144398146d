"""Status, stop, upgrade, health and metrics."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from evercron import __version__
from evercron.process.cgroup import limit_support
from evercron.scheduler.timing import local_zone
from evercron.server.access import access_of
from evercron.server.context import UpgradeRefused, context_of
from evercron.server.convert import node_out
from evercron.server.errors import ApiError
from evercron.server.schemas import (
    DisagreementOut,
    ErrorOut,
    Generation,
    LimitsOut,
    StatusOut,
    UpgradeOut,
)

router = APIRouter(tags=["daemon"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 409)}


@router.get("/api/v1/status", response_model=StatusOut, responses=_ERRORS)
async def status(request: Request) -> StatusOut:
    """Version, uptime, jobs, running runs, the daemon generations (the serving one and
    any still draining after an upgrade, each with its running runs) and how this
    machine enforces job limits."""
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
        limits=LimitsOut(**limit_support().describe()),
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


@router.get("/metrics", response_class=Response, responses={503: {"model": ErrorOut}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics: the daemon's gauges and every job's (labelled `job_name`)."""
    source = context_of(request).metrics
    if source is None:
        raise ApiError(503, "this daemon process serves no metrics")
    return Response(await source.text(), media_type=CONTENT_TYPE_LATEST)
