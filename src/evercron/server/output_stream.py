"""A run's output as server-sent events, framed so that no output can break the stream.

Each event's data is one line of JSON: `{"offset": N, "text": "..."}` for a chunk of
stdout or stderr, `{"offset": N, "dropped": K}` where bytes were not kept, and
`{"offset": N, "status": "..."}` at the end. JSON escapes every CR and LF, so output
with bare carriage returns or text like `event: end` stays data. `text` is the chunk's
bytes decoded as UTF-8 with Python's "surrogateescape": a byte that is not valid UTF-8
becomes the lone surrogate U+DC80..U+DCFF (sent as a `\\udcXX` escape), so a client
restores the exact bytes - also of a character split across two chunks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from evercron.scheduler import LiveEvent
from evercron.server.context import ApiContext
from evercron.server.errors import ApiError

_POLL_SECONDS = 0.5
_HEARTBEAT_SECONDS = 15.0
_STORED_BATCH = 64  # chunks per store read: at most 4 MiB of 64 KiB pipe reads
_JOIN_WAIT = 1.0  # twice the launcher's FLUSH_SECONDS
_JOIN_STEP = 0.05
_MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def chunk_text(data: bytes) -> str:
    """A chunk's bytes as text that gives the same bytes back with
    `text.encode("utf-8", "surrogateescape")`."""
    return data.decode("utf-8", "surrogateescape")


def output_event(kind: str, offset: int, data: bytes) -> bytes:
    """A `stdout` or `stderr` event for the chunk at byte `offset`."""
    return _frame(kind, offset, {"offset": offset, "text": chunk_text(data)})


def truncated_event(offset: int, dropped: int) -> bytes:
    """A `truncated` event: `dropped` bytes from `offset` on were not kept."""
    return _frame("truncated", offset, {"offset": offset, "dropped": dropped})


def end_event(offset: int, status: str) -> bytes:
    """The `end` event: the run finished with `status` after `offset` bytes."""
    return _frame("end", offset, {"offset": offset, "status": status})


def _frame(kind: str, offset: int, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    # Lone surrogates cannot be written as UTF-8: send them as JSON escapes.
    data = _ESCAPED_BYTE.sub(lambda found: f"\\u{ord(found.group()):04x}", data)
    return f"id: {offset}\nevent: {kind}\ndata: {data}\n\n".encode()


def resume_after(last_event_id: str | None) -> int:
    """The byte offset a `Last-Event-ID` header resumes after (-1 without one); a value
    that is not a non-negative integer below 2^63 is a 400."""
    if last_event_id is None:
        return -1
    if not _EVENT_ID.fullmatch(last_event_id) or int(last_event_id) > _MAX_EVENT_ID:
        raise ApiError(
            400,
            f'Last-Event-ID "{last_event_id[:40]}" is not a byte offset '
            "(a whole number from 0 to 2^63-1)",
        )
    return int(last_event_id)


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
            events.append(truncated_event(self.expected, offset - self.expected))
        events.append(output_event(kind, offset, data))
        self.after, self.expected = offset, offset + len(data)
        return events


async def stored_bytes(context: ApiContext, run_id: int, start: int) -> AsyncIterator[bytes]:
    """A run's stored output from the chunk at `start` on, one store read at a time."""
    after = start - 1
    while True:
        chunks = await context.store.read_output(run_id, after, _STORED_BATCH)
        if chunks:
            yield b"".join(chunk.data for chunk in chunks)
            after = chunks[-1].offset
        if len(chunks) < _STORED_BATCH:
            return


async def follow(
    context: ApiContext, request: Request, run_id: int, after: int, start: int = 0
) -> AsyncIterator[bytes]:
    """The events of a run's output after byte offset `after` (-1: from the chunk at
    `start` on), live while this process runs it, from the store otherwise, until its
    `end` event. Ends early when this process hands over to a successor (the client
    resumes there)."""
    live = context.live
    following = live.is_live(run_id) and not context.daemon.draining
    subscription = live.subscribe(run_id) if following else None
    cursor = _Cursor(start - 1, start)
    if after >= 0:  # resuming: the next byte follows the chunk the client saw last
        cursor.after = after
        seen = await context.store.read_output(run_id, after - 1, 1)
        found = bool(seen) and seen[0].offset == after
        cursor.expected = after + len(seen[0].data) if found else after + 1
    try:
        async for piece in _stored_events(context, run_id, cursor):
            yield piece
        if subscription is not None:
            backlog, queue = subscription
            if backlog and backlog[0].offset > cursor.expected:
                async for piece in _catch_up(context, run_id, cursor, backlog[0].offset):
                    yield piece
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
            async for piece in _stored_events(context, run_id, cursor):
                yield piece
            if finished:
                if run.output_bytes > cursor.expected:
                    yield truncated_event(cursor.expected, run.output_bytes - cursor.expected)
                yield end_event(max(run.output_bytes, cursor.expected), str(run.status))
                return
            if context.daemon.draining or await request.is_disconnected():
                return  # handed over: the client resumes from the successor
            await asyncio.sleep(_POLL_SECONDS)  # run owned by another process: read the store
    finally:
        if subscription is not None:
            live.unsubscribe(run_id, subscription[1])


async def _catch_up(
    context: ApiContext, run_id: int, cursor: _Cursor, until: int
) -> AsyncIterator[bytes]:
    """Read the store until it holds the bytes before offset `until` (where the live
    backlog starts) that it will ever hold while the run goes on, for at most
    `_JOIN_WAIT` seconds. The launcher stores the first half of `max_output` in batches
    (up to FLUSH_SECONDS late) and the rest only at the end: without this a follower
    arriving meanwhile was told that bytes not stored yet were never kept."""
    head = await _head_limit(context, run_id)
    target = until if head is None else min(until, head)
    deadline = asyncio.get_running_loop().time() + _JOIN_WAIT
    while cursor.expected < target and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(_JOIN_STEP)
        async for piece in _stored_events(context, run_id, cursor):
            yield piece


async def _head_limit(context: ApiContext, run_id: int) -> int | None:
    """Where the part of a running run's output stored as it comes ends (the first half
    of its job's `max_output`, as the launcher's `OutputSink` keeps it), if known."""
    run = await context.store.get_run(run_id)
    stored = None if run is None else await context.store.get_job(run.job)
    if stored is None:
        return None
    return stored.job.max_output - stored.job.max_output // 2


async def _stored_events(context: ApiContext, run_id: int, cursor: _Cursor) -> AsyncIterator[bytes]:
    """The stored chunks after the cursor, one write per store read (a large output is
    never held whole in memory)."""
    while True:
        chunks = await context.store.read_output(run_id, cursor.after, _STORED_BATCH)
        pieces = [p for c in chunks for p in cursor.emit(c.stream, c.offset, c.data)]
        if pieces:
            yield b"".join(pieces)
        if len(chunks) < _STORED_BATCH:
            return


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
