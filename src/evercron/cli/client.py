"""Talking to a running daemon over HTTP: finding it, authenticating, clear failures.

Over HTTPS the daemon's certificate is always verified, since the token travels with
every request: against `--ca-cert` (`EVERCRON_CA_CERT`) when given, else against the
system's trusted CAs, which OpenSSL's `SSL_CERT_FILE` and `SSL_CERT_DIR` replace.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from evercron.cli.errors import CliError
from evercron.config import default_state_dir
from evercron.daemon.state import read_address
from evercron.text import printable

_IDEMPOTENT = {"GET", "HEAD", "DELETE", "PUT"}


class Client:
    """An API client for one daemon. Every failure becomes a one-line `CliError`."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        state_dir: str | None,
        timeout: float = 30.0,
        ca_cert: str | None = None,
    ) -> None:
        found = read_address(Path(state_dir) if state_dir else default_state_dir()) or {}
        self.url = (url or os.environ.get("EVERCRON_URL") or found.get("url") or "").rstrip("/")
        if not self.url:
            where = state_dir or default_state_dir()
            raise CliError(
                f"no running evercron daemon found (state dir {where}): start one "
                "with `evercron serve`, or pass --url"
            )
        if not self.url.startswith(("http://", "https://")):
            raise CliError(f'"{printable(self.url)}" is not an http:// or https:// URL')
        self.token = token or os.environ.get("EVERCRON_TOKEN") or found.get("token")
        if self.token and not all("!" <= char <= "~" for char in self.token):
            raise CliError("the API token must be printable ASCII characters without spaces")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        tls = _tls_context(ca_cert) if self.url.startswith("https:") else True
        try:
            self._http = httpx.Client(
                base_url=self.url, headers=headers, timeout=timeout, verify=tls
            )
        except (httpx.InvalidURL, UnicodeError) as error:
            raise CliError(f'"{printable(self.url)}" is not a usable URL: {error}') from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; the decoded JSON answer (None for 204)."""
        response = self._send(method, path, **kwargs)
        if response.status_code == 204:
            return None
        return response.json()

    def raw(self, method: str, path: str, **kwargs: Any) -> bytes:
        """Send a request; the raw answer body."""
        return self._send(method, path, **kwargs).content

    def stream_lines(self, path: str, headers: dict[str, str] | None = None) -> Iterator[str]:
        """The lines of a streaming answer (server-sent events)."""
        try:
            with self._http.stream("GET", path, headers=headers, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CliError(_message(response))
                yield from response.iter_lines()
        except httpx.TransportError as error:
            raise CliError(self._unreachable(error)) from None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempts = 2 if method in _IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
                break
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
                if attempt + 1 == attempts:
                    raise CliError(self._unreachable(error)) from None
            except httpx.TransportError as error:
                raise CliError(self._unreachable(error)) from None
        if response.status_code >= 400:
            raise CliError(_message(response))
        return response

    def _unreachable(self, error: Exception) -> str:
        reason = str(error) or type(error).__name__
        if _untrusted(error):
            return (
                f"the TLS certificate of the evercron daemon at {self.url} is not trusted "
                f"({reason}): pass --ca-cert FILE (or set EVERCRON_CA_CERT or SSL_CERT_FILE)"
            )
        return f"cannot reach the evercron daemon at {self.url}: {reason} (is it running?)"


def _tls_context(ca_cert: str | None) -> ssl.SSLContext:
    """Verification against `ca_cert` (PEM), or the system's CAs when None."""
    try:
        return ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise CliError(f"--ca-cert {ca_cert}: not a readable PEM certificate ({reason})") from None


def _untrusted(error: BaseException) -> bool:
    """Whether `error` comes from a certificate that failed verification."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


def _message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("error")
    except ValueError:
        detail = None
    return str(detail or f"the daemon answered HTTP {response.status_code}")
