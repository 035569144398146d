"""The nodes sharing the store: list, drain, undrain; applying config files; readiness."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from evercron.model import Job, JobError
from evercron.server.context import context_of
from evercron.server.convert import node_out
from evercron.server.errors import ApiError
from evercron.server.schemas import ApplyIn, ApplyOut, ErrorOut, NodeOut

router = APIRouter(tags=["nodes"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 422)
}


@router.get("/api/v1/nodes", response_model=list[NodeOut], responses=_ERRORS)
async def list_nodes(request: Request) -> list[NodeOut]:
    """Every node sharing the store, by name: `alive`, `draining` (claims nothing while
    its commands finish), `expired` (stopped renewing its lease) or `left`."""
    return [node_out(node) for node in await context_of(request).store.nodes()]


@router.post("/api/v1/nodes/{name}/drain", response_model=NodeOut, responses=_ERRORS)
async def drain_node(name: str, request: Request) -> NodeOut:
    """Make a node stop claiming firings while its running commands finish."""
    return await _set_drained(request, name, True)


@router.post("/api/v1/nodes/{name}/undrain", response_model=NodeOut, responses=_ERRORS)
async def undrain_node(name: str, request: Request) -> NodeOut:
    """Let a drained node claim firings again."""
    return await _set_drained(request, name, False)


async def _set_drained(request: Request, name: str, drained: bool) -> NodeOut:
    store = context_of(request).store
    if not await store.set_drained(name, drained):
        raise ApiError(404, f'no node named "{name}"')
    found = [node for node in await store.nodes() if node.name == name]
    if not found:
        raise ApiError(404, f'no node named "{name}"')
    return node_out(found[0])


@router.post("/api/v1/apply", response_model=ApplyOut, responses=_ERRORS)
async def apply_files(body: ApplyIn, request: Request) -> ApplyOut:
    """Make this node's file-defined jobs exactly these (what `evercron apply FILE...`
    sends): idempotent. Other nodes' files and API-made jobs stay; the definition
    applied last wins where nodes disagree."""
    context = context_of(request)
    jobs = [_job(data, index) for index, data in enumerate(body.jobs)]
    names = [job.name for job in jobs]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise ApiError(422, f"job(s) defined twice: {', '.join(doubled)}")
    before = {stored.job.name for stored in await context.store.list_jobs()}
    changed = await context.store.reconcile_jobs(jobs, dt.datetime.now(dt.UTC))
    for name in changed:
        await context.jobs.reload(name)
    after = {stored.job.name for stored in await context.store.list_jobs()}
    return ApplyOut(
        added=sorted(n for n in changed if n not in before and n in after),
        changed=sorted(n for n in changed if n in before and n in after),
        removed=sorted(n for n in changed if n in before and n not in after),
    )


def _job(data: dict[str, Any], index: int) -> Job:
    fields = {key: value for key, value in data.items() if key != "source"}
    source = data.get("source")
    if not isinstance(source, str) or not source or source == "api":
        raise ApiError(422, f"jobs[{index}]: source: the file that defines it is required")
    if fields.get("user") or fields.get("group"):
        raise ApiError(
            403,
            f"jobs[{index}]: jobs that run as another user or group are applied only from "
            "the node's own config files at its start, not through the API",
        )
    try:
        return Job.from_mapping(fields, source=source)
    except JobError as error:
        raise ApiError(422, f"jobs[{index}] ({fields.get('name', '?')}): {error}") from None


@router.get("/readyz", responses={503: {"model": ErrorOut}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness, without authentication: 200 while this node can take work, 503 with
    the reason while it cannot (the database is unreachable, its lease is at risk, it is
    starting or stopping). `/healthz` is liveness: it stays 200 meanwhile, so that an
    orchestrator does not restart a node whose commands it should keep."""
    reason = context_of(request).daemon.readiness()
    if reason is not None:
        return JSONResponse({"status": "not ready", "error": reason}, status_code=503)
    return JSONResponse({"status": "ready"})
