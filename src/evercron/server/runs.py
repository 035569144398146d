"""/api/v1/runs: history, one run, its output (whole or followed live), kill."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from evercron.model import RunStatus
from evercron.scheduler import LiveEvent
from evercron.server.context import DaemonContext
from evercron.server.convert import run_out
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, RunOut

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 409, 422)
}
_POLL_SECONDS = 0.5
_HEARTBEAT_SECONDS = 15.0


def _context(request: Request) -> DaemonContext:
    context: DaemonContext = request.app.state.context
    return context


@router.get("", response_model=list[RunOut], responses=_ERRORS)
async def list_runs(
    request: Request,
    job: str | None = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[RunOut]:
    """Runs, newest first, filtered by job and status."""
    context = _context(request)
    runs = await context.db(context.store.list_runs, job, status, limit)
    return [run_out(run) for run in runs]


@router.get("/{run_id}", response_model=RunOut, responses=_ERRORS)
async def get_run(run_id: int, request: Request) -> RunOut:
    """One run."""
    context = _context(request)
    run = await context.db(context.store.get_run, run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    return run_out(run)


@router.post("/{run_id}/kill", response_model=RunOut, status_code=202, responses=_ERRORS)
async def kill_run(run_id: int, request: Request) -> RunOut:
    """End a running run's whole process tree; it ends with status `killed`."""
    context = _context(request)
    run = await context.db(context.store.get_run, run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    if run.status is not RunStatus.RUNNING:
        raise ApiError(409, f"run {run_id} is not running (it {run.status})")
    if not await context.scheduler.launcher.kill(run_id):
        raise ApiError(409, f"run {run_id} is run by another evercron process ({run.owner})")
    return run_out(run)


@router.get(
    "/{run_id}/output",
    responses={
        **_ERRORS,
        200: {"content": {"application/octet-stream": {}, "text/event-stream": {}}},
    },
)
async def run_output(
    run_id: int,
    request: Request,
    follow: Annotated[bool, Query()] = False,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The captured output; with `follow=1` a server-sent event stream: `stdout`/`stderr`
    events (id = byte offset), `truncated` where bytes were dropped, `end` with the final
    status. Reconnect with Last-Event-ID to resume."""
    context = _context(request)
    run = await context.db(context.store.get_run, run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    if not follow:
        chunks = await context.db(context.store.read_output, run_id, -1, 1_000_000)
        return Response(
            b"".join(c.data for c in chunks),
            media_type="application/octet-stream",
            headers={"X-Evercron-Truncated": str(run.output_truncated).lower()},
        )
    try:
        after = int(last_event_id) if last_event_id else -1
    except ValueError:
        raise ApiError(400, f'Last-Event-ID "{last_event_id}" is not a byte offset') from None
    return StreamingResponse(
        _follow(context, request, run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow(
    context: DaemonContext, request: Request, run_id: int, after: int
) -> AsyncIterator[bytes]:
    live = context.scheduler.live
    queue = live.subscribe(run_id) if live.is_live(run_id) else None
    # `expected` is where the next chunk should start; a chunk further on means bytes
    # were dropped in between (the middle of a large output).
    expected = 0
    if after >= 0:
        resumed = await context.db(context.store.read_output, run_id, after - 1, 1)
        found = resumed and resumed[0].offset == after
        expected = after + len(resumed[0].data) if found else after + 1
    try:
        while True:
            stored = await context.db(context.store.read_output, run_id, after, 500)
            for chunk in stored:
                if chunk.offset > expected:
                    yield _event("truncated", expected, str(chunk.offset - expected))
                yield _event(chunk.stream, chunk.offset, chunk.data)
                after, expected = chunk.offset, chunk.offset + len(chunk.data)
            if len(stored) == 500:
                continue
            run = await context.db(context.store.get_run, run_id)
            if run is None:
                return
            if run.status.finished and queue is None:
                if run.output_bytes > expected:
                    yield _event("truncated", expected, str(run.output_bytes - expected))
                yield _event("end", max(run.output_bytes, expected), str(run.status))
                return
            if queue is not None:
                async for event in _live_events(queue, request):
                    if event.kind == "end":
                        # The tail is in the store once the run ended: send what is missing.
                        queue = None
                        break
                    if event.offset + len(event.data) <= expected:
                        continue
                    if event.offset > expected:
                        missing = await context.db(context.store.read_output, run_id, after, 500)
                        for chunk in missing:
                            if chunk.offset >= expected and chunk.offset < event.offset:
                                yield _event(chunk.stream, chunk.offset, chunk.data)
                                after, expected = chunk.offset, chunk.offset + len(chunk.data)
                    if event.offset > expected:
                        yield _event("truncated", expected, str(event.offset - expected))
                    yield _event(event.kind, event.offset, event.data)
                    after, expected = event.offset, event.offset + len(event.data)
                else:
                    return  # stream ended (daemon stopping, follower too slow): client resumes
                continue
            if await request.is_disconnected():
                return
            await asyncio.sleep(_POLL_SECONDS)  # run owned by another process: read the store
    finally:
        if queue is not None:
            live.unsubscribe(run_id, queue)


async def _live_events(
    queue: asyncio.Queue[LiveEvent | None], request: Request
) -> AsyncIterator[LiveEvent]:
    while True:
        try:
            event = await asyncio.wait_for(queue.get(), _HEARTBEAT_SECONDS)
        except TimeoutError:
            if await request.is_disconnected():
                return
            continue
        if event is None:
            return
        yield event


def _event(kind: str, offset: int, data: bytes | str) -> bytes:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"id: {offset}\nevent: {kind}\n{lines}\n".encode()
