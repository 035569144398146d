"""The ASGI application: routes, bearer-token auth for /api (the API token, or the
read-only viewer token), body size limit, errors."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from evercron import __version__
from evercron.server import access, cluster, jobs, notifications, runs, schedule, system, web
from evercron.server.context import ApiContext
from evercron.server.errors import install_error_handlers

MAX_BODY_BYTES = 1024 * 1024
Message = MutableMapping[str, Any]


def create_app(context: ApiContext) -> FastAPI:
    """The API and web page app for a running daemon."""
    app = FastAPI(
        title="evercron",
        version=__version__,
        description="A cron job runner for Linux that never has to stop.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(runs.router)
    app.include_router(schedule.router)
    app.include_router(notifications.router)
    app.include_router(system.router)
    app.include_router(cluster.router)
    app.include_router(web.router)
    app.add_middleware(_Guard, token=context.token, viewer_token=context.viewer_token)
    app.add_middleware(_CloseWhileDraining, context=context)
    return app


class _CloseWhileDraining:
    """Once this process handed over, every response says `Connection: close`: the
    client's next request opens a connection, which the successor accepts."""

    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.context.daemon.draining:
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class _Guard:
    """Bearer token for /api/ (and /metrics), and a limit on request bodies. The viewer
    token may only read (GET, HEAD): anything else is a 403."""

    def __init__(self, app: ASGIApp, token: str, viewer_token: str | None = None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.viewer = None if viewer_token is None else f"Bearer {viewer_token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        protected = path.startswith("/api/") and path != "/api/v1/openapi.json"
        if protected or path == "/metrics":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if self.viewer is not None and secrets.compare_digest(given, self.viewer):
                if scope["method"] not in access.READ_METHODS:
                    await _reply(
                        send, 403, "the viewer token can only read: changes need the API token"
                    )
                    return
                access.grant(scope, "read-only")
            elif not secrets.compare_digest(given, self.expected):
                reason = "missing" if not given else "wrong"
                await _reply(
                    send,
                    401,
                    f"{reason} API token: send Authorization: Bearer <token>",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _reply(send, 413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        await self.app(scope, _limited(receive), send)


def _limited(receive: Receive) -> Callable[[], Awaitable[Message]]:
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                return {"type": "http.disconnect"}
        return message

    return limited


async def _reply(
    send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
