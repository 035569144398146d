"""Errors as JSON: `{"error": "one clear sentence"}` with a 4xx status, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from evercron.store import StoreUnavailable
from evercron.text import printable

log = logging.getLogger("evercron.server")
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
_PLACES = ("body", "query", "path", "header", "cookie")


class ApiError(Exception):
    """A failed request: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """`{"error": message}` with `status`; text UTF-8 cannot encode (a lone surrogate a
    client sent) is escaped, so that quoting a client's input never fails."""
    return JSONResponse({"error": printable(message)}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as `{"error": ...}`."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return error_response(error.status_code, str(error.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            if item.get("type") == "json_invalid":
                position = item.get("loc", ("body", "?"))[-1]
                problems.append(f"the request body is not valid JSON (at character {position})")
                continue
            location = list(item.get("loc", ()))
            if location and location[0] in _PLACES:  # where a request carries it: said once
                location = location[1:]
            where = ".".join(str(part) for part in location)
            if item.get("type") == "extra_forbidden":
                problems.append(f"{where}: unknown field (the fields are in the API document)")
                continue
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        return error_response(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_: Request, error: StoreUnavailable) -> JSONResponse:
        return error_response(
            503,
            f"the store refuses writes for now ({error}); try again",
            {"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error in a request")
        return error_response(500, f"internal error: {type(error).__name__}")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path. (Starlette's own 405 names the first
    route's only, while each method of a path is a route of its own here.)"""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)
