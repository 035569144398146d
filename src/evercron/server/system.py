"""Status, stop, upgrade, health and metrics."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from evercron import __version__
from evercron.model import RunStatus
from evercron.server.context import DaemonContext
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, Generation, StatusOut

router = APIRouter(tags=["daemon"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 409)}


def _context(request: Request) -> DaemonContext:
    context: DaemonContext = request.app.state.context
    return context


@router.get("/api/v1/status", response_model=StatusOut, responses=_ERRORS)
async def status(request: Request) -> StatusOut:
    """Version, uptime, jobs, running runs and the daemon generations."""
    context = _context(request)
    jobs = await context.db(context.store.list_jobs)
    running = sorted(context.scheduler.launcher.running)
    now = dt.datetime.now(dt.UTC)
    return StatusOut(
        version=__version__,
        pid=os.getpid(),
        started_at=context.started_at,
        uptime_seconds=(now - context.started_at).total_seconds(),
        jobs=len(jobs),
        paused_jobs=sum(1 for j in jobs if j.paused),
        running_runs=running,
        state_dir=str(context.state_dir),
        generations=[
            Generation(
                pid=os.getpid(), role="serving", started_at=context.started_at, running_runs=running
            )
        ],
    )


@router.post("/api/v1/stop", status_code=202, responses=_ERRORS)
async def stop(request: Request) -> dict[str, str]:
    """Shut down gracefully (as SIGTERM): running jobs may finish within shutdown_grace."""
    _context(request).request_stop()
    return {"status": "stopping"}


@router.post("/api/v1/upgrade", status_code=501, responses=_ERRORS)
async def upgrade(request: Request) -> dict[str, str]:
    """Hot upgrade - not available in this version yet."""
    raise ApiError(501, "hot upgrade is not implemented in this version of evercron")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness, without authentication."""
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    context = _context(request)
    registry = CollectorRegistry()
    jobs = await context.db(context.store.list_jobs)
    Gauge("evercron_jobs", "Jobs defined", registry=registry).set(len(jobs))
    Gauge("evercron_jobs_paused", "Jobs paused", registry=registry).set(
        sum(1 for j in jobs if j.paused)
    )
    Gauge("evercron_runs_running", "Runs running in this process", registry=registry).set(
        len(context.scheduler.launcher.running)
    )
    by_status = Gauge(
        "evercron_recent_runs", "Runs among the last 1000 by status", ["status"], registry=registry
    )
    recent = await context.db(context.store.list_runs, None, None, 1000)
    for state in RunStatus:
        by_status.labels(state.value).set(sum(1 for r in recent if r.status is state))
    Gauge("evercron_uptime_seconds", "Seconds since the daemon started", registry=registry).set(
        (dt.datetime.now(dt.UTC) - context.started_at).total_seconds()
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
