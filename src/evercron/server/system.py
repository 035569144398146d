"""Status, stop, upgrade, health and metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from evercron import __version__
from evercron.daemon import state
from evercron.daemon.upgrade import UpgradeBusy, UpgradeError
from evercron.model import RunStatus
from evercron.scheduler.timing import local_zone
from evercron.server.access import access_of
from evercron.server.context import DaemonContext
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, Generation, StatusOut, UpgradeOut

router = APIRouter(tags=["daemon"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 409)}


def _context(request: Request) -> DaemonContext:
    context: DaemonContext = request.app.state.context
    return context


@router.get("/api/v1/status", response_model=StatusOut, responses=_ERRORS)
async def status(request: Request) -> StatusOut:
    """Version, uptime, jobs, running runs and the daemon generations: the serving one
    and any still draining after an upgrade, each with its running runs."""
    context = _context(request)
    jobs, paused = await context.db(context.store.job_counts)
    running = sorted(context.scheduler.launcher.running)
    now = dt.datetime.now(dt.UTC)
    generations = [
        Generation(
            pid=os.getpid(),
            generation=context.generation,
            role="draining" if context.draining else "serving",
            version=__version__,
            started_at=context.started_at,
            running_runs=running,
        )
    ]
    others = await asyncio.to_thread(state.living_generations, context.state_dir)
    for owner, info in others.items():
        if owner == context.owner:
            continue
        theirs = await context.db(context.store.running, owner)
        try:
            generations.append(
                Generation(
                    pid=int(info["pid"]),
                    generation=int(info.get("generation", 0)),
                    role=_role(info.get("role")),
                    version=str(info.get("version", "")),
                    started_at=dt.datetime.fromisoformat(str(info["started_at"])),
                    running_runs=sorted(run.id for run, _ in theirs),
                )
            )
        except (KeyError, ValueError, TypeError):
            continue  # a file being rewritten: shown next time
    order = {"serving": 0, "starting": 1, "draining": 2}
    generations.sort(key=lambda g: (order[g.role], -g.generation))
    return StatusOut(
        version=__version__,
        pid=os.getpid(),
        started_at=context.started_at,
        uptime_seconds=(now - context.started_at).total_seconds(),
        jobs=jobs,
        paused_jobs=paused,
        running_runs=running,
        state_dir=str(context.state_dir),
        generations=generations,
        timezone=str(local_zone()),
        access=access_of(request),
    )


def _role(text: object) -> Literal["serving", "draining", "starting"]:
    if text == "draining":
        return "draining"
    return "starting" if text == "starting" else "serving"


@router.post("/api/v1/stop", status_code=202, responses=_ERRORS)
async def stop(request: Request) -> dict[str, str]:
    """Shut down gracefully (as SIGTERM): running jobs may finish within shutdown_grace."""
    _context(request).request_stop()
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
    context = _context(request)
    try:
        handover = await context.upgrade()
    except UpgradeBusy as error:
        raise ApiError(409, str(error)) from None
    except UpgradeError as error:
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
    for run_status in RunStatus:
        by_status.labels(run_status.value).set(sum(1 for r in recent if r.status is run_status))
    Gauge("evercron_uptime_seconds", "Seconds since the daemon started", registry=registry).set(
        (dt.datetime.now(dt.UTC) - context.started_at).total_seconds()
    )
    lag = context.scheduler.launcher.lag
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
    Gauge(
        "evercron_firings_missed",
        "Scheduled firings not run: they could start only after misfire_grace (this process)",
        registry=registry,
    ).set(lag.missed_total)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
