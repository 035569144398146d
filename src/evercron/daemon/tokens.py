"""Who may use the API: the API token and the read-only viewer token, and the rules a
daemon checks before it serves with them (a token must travel in a header; an address
other machines reach needs a token long enough not to be guessed)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from evercron.daemon import listeners

MIN_REMOTE_TOKEN = 16  # characters of a token that other machines can try to guess


class TokenError(ValueError):
    """A token the daemon must not serve with; the message says why."""


def api_token(configured: str | None) -> str | None:
    """The API token: [daemon] token, else EVERCRON_TOKEN (None: one is made up)."""
    return configured or os.environ.get("EVERCRON_TOKEN") or None


def viewer_token(configured: str | None) -> str | None:
    """The read-only token: [daemon] viewer_token, else EVERCRON_VIEWER_TOKEN."""
    return configured or os.environ.get("EVERCRON_VIEWER_TOKEN") or None


def check_tokens(token: str | None, viewer: str | None, sockets: Iterable[socket.socket]) -> None:
    """Raise `TokenError` for a token (the API's or the viewer's) that cannot travel in
    a header, a viewer token equal to the API token, and, on an address other machines
    reach (as bound: the real one), no API token or a token shorter than
    `MIN_REMOTE_TOKEN`."""
    if token is not None and viewer == token:
        raise TokenError("the viewer token must differ from the API token")
    tokens = [("the API token", "a token", token), ("the viewer token", "a viewer token", viewer)]
    for name, _, value in tokens:
        if value is not None and not all("!" <= char <= "~" for char in value):
            raise TokenError(f"{name} must be printable ASCII characters without spaces")
    for sock in sockets:
        if listeners.is_loopback(listeners.address_of(sock)[0]):
            continue
        where = listeners.shown_address(sock)
        if token is None:
            raise TokenError(
                f"listening on {where} (not loopback) needs a token: set "
                "EVERCRON_TOKEN or [daemon] token"
            )
        for _, needed, value in tokens:
            if value is not None and len(value) < MIN_REMOTE_TOKEN:
                raise TokenError(
                    f"listening on {where} (not loopback) needs {needed} of at least "
                    f"{MIN_REMOTE_TOKEN} characters (this one has {len(value)})"
                )
