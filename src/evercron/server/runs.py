"""/api/v1/runs: history, one run, its output (whole or followed live), kill."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from evercron.model import RunStatus
from evercron.scheduler import KillOutcome, LiveEvent
from evercron.server.context import ApiContext, context_of
from evercron.server.convert import run_out
from evercron.server.errors import ApiError
from evercron.server.schemas import ErrorOut, RunOut
from evercron.store import RunQuery

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 409, 422)
}
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A run id")]
_POLL_SECONDS = 0.5
_HEARTBEAT_SECONDS = 15.0


@router.get("", response_model=list[RunOut], responses=_ERRORS)
async def list_runs(
    request: Request,
    job: str | None = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[RunOut]:
    """Runs, newest first, filtered by job and status."""
    context = context_of(request)
    runs = await context.store.list_runs(RunQuery(job, status, limit))
    return [run_out(run) for run in runs]


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
    follow: Annotated[bool, Query()] = False,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The captured output; with `follow=1` a server-sent event stream: `stdout`/`stderr`
    events (id = byte offset), `truncated` where bytes were dropped, `end` with the final
    status. Reconnect with Last-Event-ID to resume."""
    context = context_of(request)
    run = await context.store.get_run(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    if not follow:
        chunks = await context.store.read_output(run_id, -1, 1_000_000)
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


class _Cursor:
    """What a follower has been sent: the last event id, and where the next byte is.

    A chunk starting further on than expected means bytes were dropped in between (the
    middle of a large output): a `truncated` event says how many."""

    def __init__(self, after: int, expected: int) -> None:
        self.after = after
        self.expected = expected

    def emit(self, kind: str, offset: int, data: bytes) -> list[bytes]:
        if offset + len(data) <= self.expected and offset <= self.after:
            return []  # already sent
        events = []
        if offset > self.expected:
            events.append(_event("truncated", self.expected, str(offset - self.expected)))
        events.append(_event(kind, offset, data))
        self.after, self.expected = offset, offset + len(data)
        return events


async def _follow(
    context: ApiContext, request: Request, run_id: int, after: int
) -> AsyncIterator[bytes]:
    live = context.live
    following = live.is_live(run_id) and not context.daemon.draining
    subscription = live.subscribe(run_id) if following else None
    cursor = _Cursor(after, 0)
    if after >= 0:  # resuming: the next byte follows the chunk the client saw last
        seen = await context.store.read_output(run_id, after - 1, 1)
        found = bool(seen) and seen[0].offset == after
        cursor.expected = after + len(seen[0].data) if found else after + 1
    try:
        for piece in await _stored_events(context, run_id, cursor):
            yield piece
        if subscription is not None:
            backlog, queue = subscription
            for event in backlog:
                for piece in cursor.emit(event.kind, event.offset, event.data):
                    yield piece
            async for event in _live_events(queue, request):
                if event.kind == "end":
                    break
                for piece in cursor.emit(event.kind, event.offset, event.data):
                    yield piece
            else:
                return  # the stream was closed (daemon stopping, follower too slow)
        while True:
            run = await context.store.get_run(run_id)
            if run is None:
                return
            finished = run.status.finished
            for piece in await _stored_events(context, run_id, cursor):
                yield piece
            if finished:
                if run.output_bytes > cursor.expected:
                    yield _event(
                        "truncated", cursor.expected, str(run.output_bytes - cursor.expected)
                    )
                yield _event("end", max(run.output_bytes, cursor.expected), str(run.status))
                return
            if context.daemon.draining or await request.is_disconnected():
                return  # handed over: the client resumes from the successor
            await asyncio.sleep(_POLL_SECONDS)  # run owned by another process: read the store
    finally:
        if subscription is not None:
            live.unsubscribe(run_id, subscription[1])


async def _stored_events(context: ApiContext, run_id: int, cursor: _Cursor) -> list[bytes]:
    pieces: list[bytes] = []
    while True:
        chunks = await context.store.read_output(run_id, cursor.after, 500)
        for chunk in chunks:
            pieces.extend(cursor.emit(chunk.stream, chunk.offset, chunk.data))
        if len(chunks) < 500:
            return pieces


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
