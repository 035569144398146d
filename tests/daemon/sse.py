"""Reading a run's output stream as a browser's EventSource would: lines end at CR, LF or
CRLF, a blank line dispatches the event, its data is the JSON the API documents."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    """One server-sent event: its id, its type and its decoded JSON data."""

    id: int
    kind: str
    data: dict[str, Any]


def parse(body: bytes) -> list[Event]:
    """Every event in an event-stream body, by the HTML standard's parsing rules."""
    text = body.decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return list(_events(lines))


def _events(lines: Iterable[str]) -> Iterable[Event]:
    ident, kind, data = "", "", []
    for line in lines:
        if not line:
            if data:
                yield Event(int(ident), kind or "message", json.loads("\n".join(data)))
            kind, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            ident = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)


def output_of(events: Iterable[Event]) -> bytes:
    """The output bytes the stdout/stderr events carry, in order."""
    return b"".join(
        e.data["text"].encode("utf-8", "surrogateescape")
        for e in events
        if e.kind in ("stdout", "stderr")
    )


def follow(
    http: httpx.Client,
    run_id: int,
    last_event_id: str | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[httpx.Response, list[Event]]:
    """Follow a run's output until the stream ends; the response and its events."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with http.stream(
        "GET",
        f"/api/v1/runs/{run_id}/output",
        params={"follow": 1, **(params or {})},
        headers=headers,
    ) as response:
        body = response.read()
    return response, (parse(body) if response.status_code == 200 else [])
