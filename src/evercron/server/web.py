"""The web page: one HTML page with its script and style, which reads everything through
the API with the token the user gives it (so the page itself needs no token)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
}
_HEADERS = {
    # Only our own script, style and API; no framing; the token never leaves as a referrer.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _page_file(name: str) -> bytes:
    return resources.files("evercron.server").joinpath("web").joinpath(name).read_bytes()


def _serve(path: str) -> None:
    name, media_type = _FILES[path]
    body = _page_file(name)

    async def page() -> Response:
        return Response(body, media_type=media_type, headers=_HEADERS)

    page.__name__ = f"web_{name.replace('.', '_')}"
    router.add_api_route(path, page, methods=["GET"])


for _path in _FILES:
    _serve(_path)
