"""Real receivers on loopback for notification tests: an HTTP server for webhooks and an
SMTP server (aiosmtpd) for mail. Each records what arrived and when."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Request:
    """One request a webhook received."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that answers each POST with the next status of
    `statuses` (the last one repeats) and `body`, and records it. Answers wait while
    `held` is set (each request is recorded on arrival, before it waits)."""

    def __init__(self, statuses: Iterable[int] = (200,), body: bytes = b"ok") -> None:
        self.statuses = list(statuses)
        self.body = body
        self.held = threading.Event()
        self._released = threading.Event()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    index = min(len(receiver.requests), len(receiver.statuses) - 1)
                    status = receiver.statuses[index]
                    receiver.requests.append(
                        Request(self.path, dict(self.headers), body, time.time(), status)
                    )
                if receiver.held.is_set():
                    receiver._released.wait(timeout=30)
                self.send_response(status)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def release(self) -> None:
        """Answer the held requests (and all later ones at once)."""
        self.held.clear()
        self._released.set()

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def wait_for(self, count: int, timeout: float = 20) -> list[Request]:
        """The first `count` requests, once they arrived."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} of {count} requests arrived")
            time.sleep(0.01)
        return self.requests[:count]


class MailReceiver:
    """An SMTP server (aiosmtpd) on 127.0.0.1, on a loop of its own in a thread."""

    reply = "250 2.0.0 Ok: queued as TEST1"

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return self.reply

    def __enter__(self) -> MailReceiver:
        self._thread.start()
        starting = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self.port = starting.result(10)
        return self

    async def _serve(self) -> int:
        self._server = await self._loop.create_server(lambda: SMTP(self), "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def wait_for(self, count: int, timeout: float = 20) -> list[Envelope]:
        """The first `count` mails, once they arrived."""
        deadline = time.monotonic() + timeout
        while len(self.envelopes) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.envelopes)} of {count} mails arrived")
            time.sleep(0.01)
        return self.envelopes[:count]
