"""/api/v1/jobs: list, create, read, change, delete, trigger, pause, resume."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response

from evercron.model import Job, JobError
from evercron.scheduler import ForbiddenConcurrency
from evercron.server.access import reads_secrets
from evercron.server.context import ApiContext, context_of
from evercron.server.convert import job_out, run_out
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, JobOut, JobPatch, JobSpec, RunOut
from evercron.store import BrokenJob, StoredJob

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422)
}


async def _stored(context: ApiContext, name: str) -> StoredJob:
    stored = await context.store.get_job(name)
    if stored is None:
        broken = await _broken(context, name)
        if broken is not None:
            raise ApiError(409, f"job {name}: {broken.error} (delete it, then add it again)")
        raise ApiError(404, f'no job named "{name}"')
    return stored


async def _broken(context: ApiContext, name: str) -> BrokenJob | None:
    """The stored row called `name` that no longer reads as a job, if there is one."""
    return next((row for row in await context.store.broken_jobs() if row.name == name), None)


def _from_api(data: dict[str, Any]) -> Job:
    if data.get("user") or data.get("group"):
        raise ApiError(
            403,
            "jobs that run as another user or group can only be defined in "
            "config files, not through the API",
        )
    try:
        job = Job.from_mapping(data, source="api")
    except JobError as error:
        raise ApiError(422, str(error)) from None
    return job


@router.get("", response_model=list[JobOut], responses=_ERRORS)
async def list_jobs(request: Request) -> list[JobOut]:
    """Every job, by name, with its next fire time."""
    context = context_of(request)
    fires = context.jobs.next_fires
    shown = reads_secrets(request)
    return [
        job_out(s, fires.get(s.job.name), show_secrets=shown)
        for s in await context.store.list_jobs()
    ]


@router.post("", response_model=JobOut, status_code=201, responses=_ERRORS)
async def create_job(spec: JobSpec, request: Request) -> JobOut:
    """Create a job: 409 if the name exists, 422 with the reason for a bad definition."""
    context = context_of(request)
    job = _from_api(spec.model_dump(exclude_none=True))
    if not await context.store.create_job(job, dt.datetime.now(dt.UTC)):
        raise ApiError(409, f'a job named "{job.name}" already exists')
    await context.jobs.reload(job.name)
    stored = await _stored(context, job.name)
    return job_out(stored, context.jobs.next_fires.get(job.name))


@router.get("/{name}", response_model=JobOut, responses=_ERRORS)
async def get_job(name: str, request: Request) -> JobOut:
    """One job."""
    context = context_of(request)
    fire = context.jobs.next_fires.get(name)
    return job_out(await _stored(context, name), fire, show_secrets=reads_secrets(request))


_PATCH_TRIES = 5
"""Reads and merges of one PATCH when other changes of the job keep coming in between."""


@router.patch("/{name}", response_model=JobOut, responses=_ERRORS)
async def change_job(name: str, patch: JobPatch, request: Request) -> JobOut:
    """Change some fields of an API-made job; takes effect at once."""
    context = context_of(request)
    changes = patch.model_dump(exclude_unset=True)
    for _ in range(_PATCH_TRIES):
        stored = await _stored(context, name)
        _refuse_config_job(stored, "changed")
        data = {**stored.job.to_mapping(), **changes}
        job = _from_api({key: value for key, value in data.items() if value is not None})
        if await context.store.update_job(job, dt.datetime.now(dt.UTC), stored.updated_at):
            break
        # deleted (the next read answers 404) or changed meanwhile: apply to the latest
    else:
        raise ApiError(409, f'job "{name}" kept changing meanwhile; try again')
    await context.jobs.reload(name)
    return job_out(await _stored(context, name), context.jobs.next_fires.get(name))


@router.delete("/{name}", status_code=204, responses=_ERRORS)
async def delete_job(name: str, request: Request) -> Response:
    """Delete an API-made job (its run history stays), or a stored row that no longer
    reads as a job."""
    context = context_of(request)
    if await _broken(context, name) is None:
        _refuse_config_job(await _stored(context, name), "deleted")
    await context.store.delete_job(name)
    await context.jobs.reload(name)
    return Response(status_code=204)


@router.post("/{name}/trigger", response_model=RunOut, status_code=202, responses=_ERRORS)
async def trigger_job(name: str, request: Request) -> RunOut:
    """Start a run now; 409 when the job forbids overlap and a run is going."""
    context = context_of(request)
    await _stored(context, name)
    try:
        run_id = await context.jobs.trigger(name)
    except ForbiddenConcurrency as error:
        raise ApiError(409, f"{error} (recorded as skipped run {error.run_id})") from None
    except KeyError:
        raise ApiError(404, f'no job named "{name}"') from None
    run = await context.store.get_run(run_id)
    assert run is not None
    return run_out(run)


@router.post("/{name}/pause", response_model=JobOut, responses=_ERRORS)
async def pause_job(name: str, request: Request) -> JobOut:
    """Stop scheduling a job (running runs continue)."""
    return await _set_paused(name, request, True)


@router.post("/{name}/resume", response_model=JobOut, responses=_ERRORS)
async def resume_job(name: str, request: Request) -> JobOut:
    """Schedule a paused job again."""
    return await _set_paused(name, request, False)


async def _set_paused(name: str, request: Request, paused: bool) -> JobOut:
    context = context_of(request)
    await _stored(context, name)
    await context.store.set_paused(name, paused)
    await context.jobs.reload(name)
    return job_out(await _stored(context, name), context.jobs.next_fires.get(name))


def _refuse_config_job(stored: StoredJob, action: str) -> None:
    if stored.job.source != "api":
        raise ApiError(
            409,
            f'job "{stored.job.name}" is defined in {stored.job.source}: '
            f"it can only be {action} there",
        )
