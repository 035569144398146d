"""The web page: one HTML page for every route, its modules and style under /ui/. The page
reads everything through the API with the token the user gives it, so serving it needs
no token; the strict Content-Security-Policy lets it load only its own files."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from evercron.server.errors import ApiError

router = APIRouter(include_in_schema=False)

# Routes the page draws itself (deep links that survive a reload).
PAGE_ROUTES = ("/", "/jobs/{name}", "/runs", "/runs/{run_id}", "/nodes", "/notifications")
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
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


def _page_files() -> dict[str, tuple[bytes, str]]:
    """Every file of the page by name, read once: (content, media type)."""
    folder = resources.files("evercron.server").joinpath("web")
    files = {}
    for entry in folder.iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            files[entry.name] = (entry.read_bytes(), _MEDIA_TYPES[suffix])
    return files


_FILES = _page_files()
_INDEX = resources.files("evercron.server").joinpath("web").joinpath("index.html").read_bytes()


async def page() -> Response:
    """The page; its script draws the view the address names."""
    return Response(_INDEX, media_type="text/html; charset=utf-8", headers=_HEADERS)


async def page_file(name: str) -> Response:
    """One of the page's scripts, its style sheet or its icon."""
    found = _FILES.get(name)
    if found is None:
        raise ApiError(404, f"no file /ui/{name}")
    return Response(found[0], media_type=found[1], headers=_HEADERS)


for _route in PAGE_ROUTES:
    router.add_api_route(_route, page, methods=["GET"], name=f"page {_route}")
router.add_api_route("/ui/{name}", page_file, methods=["GET"])
