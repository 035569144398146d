"""Who is asking: the API token may do everything, the viewer token only read.

The viewer token (`[daemon] viewer_token`, `EVERCRON_VIEWER_TOKEN`) is for people and
dashboards that watch: every GET answers as for the API token except that secrets are
hidden (a job's `env` shows its names, not their values); every change is a 403.
"""

from __future__ import annotations

from typing import Literal

from starlette.requests import Request
from starlette.types import Scope

Access = Literal["full", "read-only"]
HIDDEN = "(hidden)"
READ_METHODS = frozenset({"GET", "HEAD"})
_KEY = "evercron.access"


def grant(scope: Scope, access: Access) -> None:
    """Record what the request's token allows (called by the auth middleware)."""
    scope[_KEY] = access


def access_of(request: Request) -> Access:
    """What the request's token allows."""
    access: Access = request.scope.get(_KEY, "full")
    return access


def reads_secrets(request: Request) -> bool:
    """Whether the answer may show secrets (not to the viewer token)."""
    return access_of(request) == "full"
