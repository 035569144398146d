"""/api/v1/runs: history, one run, its output (whole or followed live), kill."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from evercron.model import RunStatus
from evercron.scheduler import KillOutcome
from evercron.server import output_stream
from evercron.server.context import context_of
from evercron.server.convert import run_out
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, IsoTime, JobRuns, RunOut
from evercron.store import RunMark, RunQuery

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422)
}
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A run id")]


@router.get("", response_model=list[RunOut], responses=_ERRORS)
async def list_runs(
    request: Request,
    job: str | None = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only runs with a smaller id (pages)")
    ] = None,
    since: Annotated[
        IsoTime | None, Query(description="Only runs scheduled at or after (ISO 8601)")
    ] = None,
    until: Annotated[
        IsoTime | None, Query(description="Only runs scheduled before (ISO 8601)")
    ] = None,
    retry_of: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only the retries of this run")
    ] = None,
) -> list[RunOut]:
    """Runs, newest first, filtered by job, status, scheduled time (a time without an
    offset is UTC) and original run. The next page of a listing: `before` = the last id."""
    context = context_of(request)
    query = RunQuery(
        job,
        status,
        limit,
        before=before,
        since=_utc("since", since),
        until=_utc("until", until),
        retry_of=retry_of,
    )
    runs = await context.store.list_runs(query)
    return [run_out(run) for run in runs]


@router.get("/latest", response_model=list[JobRuns], responses=_ERRORS)
async def latest_runs(
    request: Request, per_job: Annotated[int, Query(ge=1, le=100)] = 20
) -> Response:
    """The newest `per_job` runs of every job (newest first), briefly: a status strip
    for each job of a long list in one request."""
    context = context_of(request)
    latest = await context.store.latest_runs(per_job)
    # Written directly: with a thousand jobs, model validation would cost more than the
    # store reads.
    body = [{"job": job, "runs": [_brief(run) for run in runs]} for job, runs in latest.items()]
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _brief(run: RunMark) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": str(run.status),
        "scheduled_at": _iso(run.scheduled_at),
        "duration": run.duration,
    }


def _iso(moment: dt.datetime) -> str:
    """An API time as pydantic writes it: UTC with a Z."""
    return moment.astimezone(dt.UTC).isoformat()[:-6] + "Z"


def _utc(name: str, moment: dt.datetime | None) -> dt.datetime | None:
    """A query time in UTC; one given without an offset is UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ApiError(422, f"{name}: {moment.isoformat()} is out of the range of dates") from None


@router.get("/{run_id}", response_model=RunOut, responses=_ERRORS)
async def get_run(run_id: RunId, request: Request) -> RunOut:
    """One run."""
    context = context_of(request)
    run = await context.store.get_run(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    return run_out(run)


@router.post("/{run_id}/kill", response_model=RunOut, status_code=202, responses=_ERRORS)
async def kill_run(run_id: RunId, request: Request) -> RunOut:
    """End a running run's whole process tree, whichever daemon process runs it; it ends
    with status `killed` (or `lost` when the process that ran it is gone)."""
    context = context_of(request)
    run = await context.store.get_run(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    if run.status is not RunStatus.RUNNING:
        raise ApiError(409, f"run {run_id} is not running (it {run.status})")
    if await context.jobs.kill(run_id) is KillOutcome.NOT_RUNNING:
        raise ApiError(409, f"run {run_id} is not running")
    return run_out(await context.store.get_run(run_id) or run)


@router.get(
    "/{run_id}/output",
    responses={
        **_ERRORS,
        200: {"content": {"application/octet-stream": {}, "text/event-stream": {}}},
    },
)
async def run_output(
    run_id: RunId,
    request: Request,
    follow: Annotated[bool, Query(description="Stream events until the run ends")] = False,
    download: Annotated[bool, Query(description="As a file to save (attachment)")] = False,
    tail: Annotated[
        int | None,
        Query(ge=1, le=2**63 - 1, description="Only the last TAIL bytes kept (whole chunks)"),
    ] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The stored output bytes (`application/octet-stream`; the middle of an output larger
    than the job's `max_output` is not kept: header `X-Evercron-Truncated`). With
    `download=1` they come as an attachment named `evercron-run-<id>-<job>.log`. With
    `tail=N`, only the end: from the start of the stored chunk that holds the N-th byte
    before the end.

    With `follow=1`, a `text/event-stream` that runs until the run ends. Each event's `id`
    is the byte offset of its chunk in the whole output; its data is one line of JSON:

    - `event: stdout` / `event: stderr`, `data: {"offset": N, "text": "..."}`: `text` is the
      chunk's bytes decoded as UTF-8, where each byte that is not valid UTF-8 becomes the
      lone surrogate U+DC80..U+DCFF (Python's "surrogateescape"; JSON carries it as a
      `\\udcXX` escape). `text.encode("utf-8", "surrogateescape")` gives the exact bytes
      back; a character split across two chunks comes out whole once they are joined.
    - `event: truncated`, `data: {"offset": N, "dropped": K}`: K bytes from offset N on
      were not kept.
    - `event: end`, `data: {"offset": N, "status": "succeeded"}`: the run finished with
      this status after N bytes; the stream ends.

    To resume (the stream also ends when the daemon hands over to a new process in a hot
    upgrade), reconnect with `Last-Event-ID` set to the last id received: the stream goes
    on after that chunk (`tail` is then ignored). A Last-Event-ID that is not a whole
    number from 0 to 2^63-1 is a 400. With `tail=N` a stream starts at the tail as above
    (and says nothing of what comes before it)."""
    context = context_of(request)
    if follow and download:
        raise ApiError(422, "download: a download is the stored output, it cannot follow")
    after = output_stream.resume_after(last_event_id) if follow else -1
    run = await context.store.get_run(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    start = 0 if tail is None else await context.store.tail_start(run_id, tail)
    if follow:
        return StreamingResponse(
            output_stream.follow(context, request, run_id, after, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    headers = {"X-Evercron-Truncated": str(run.output_truncated).lower()}
    if download:
        name = f"evercron-run-{run.id}-{run.job}.log"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return StreamingResponse(
        output_stream.stored_bytes(context, run_id, start),
        media_type="application/octet-stream",
        headers=headers,
    )
