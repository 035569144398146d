"""Sending one notice through one channel: an HTTP POST (JSON or Slack format, signed
with the channel's secret) or a mail through the `[smtp]` server.

Every send ends in an `Outcome` - the receiver's answer (`HTTP 200`, the SMTP server's
reply to the message) or why it failed - and never raises.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import json
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import httpx

from evercron import __version__
from evercron.notify.channels import Channel, Smtp
from evercron.notify.payload import Notice, mail_message, slack_body

SEND_TIMEOUT = 10.0
"""Seconds one attempt may take (connecting, sending, the answer)."""
SIGNATURE_HEADER = "X-Evercron-Signature"
_IMPLICIT_TLS_PORT = 465


@dataclass(frozen=True)
class Outcome:
    """How an attempt went: `ok` with the receiver's answer, or not with the reason."""

    ok: bool
    detail: str


def signature(secret: str, body: bytes) -> str:
    """The `X-Evercron-Signature` value of `body`: `sha256=` and the hex HMAC-SHA256 of
    the exact bytes sent, keyed with the channel's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(channel: Channel, notice: Notice) -> bytes:
    """The bytes a webhook channel POSTs: the JSON payload, or a Slack message."""
    data = slack_body(notice) if channel.format == "slack" else notice.payload
    return json.dumps(data, ensure_ascii=False).encode()


async def send(
    channel: Channel, notice: Notice, smtp: Smtp | None, http: httpx.AsyncClient
) -> Outcome:
    """Send `notice` through `channel` once."""
    if channel.is_mail:
        if smtp is None:  # (the config refuses this; a guard, not a path)
            return Outcome(False, "no [smtp] table for a mailto: channel")
        try:
            message = mail_message(notice, smtp.sender, channel.address)
        except ValueError as error:  # a header the mail library refuses
            return Outcome(False, f"cannot write the mail: {error}")
        return await asyncio.to_thread(_send_mail, smtp, message, channel.address)
    return await _post(channel, notice, http)


async def _post(channel: Channel, notice: Notice, http: httpx.AsyncClient) -> Outcome:
    body = webhook_body(channel, notice)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"evercron/{__version__}",
        "X-Evercron-Event": notice.event,
    }
    if channel.secret:
        headers[SIGNATURE_HEADER] = signature(channel.secret, body)
    try:
        response = await http.post(channel.url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return Outcome(False, f"{type(error).__name__}: {error}".rstrip(": "))
    answer = f"HTTP {response.status_code}"
    if response.is_success:
        return Outcome(True, answer)
    return Outcome(False, f"{answer}: {response.text[:200]}".rstrip(": "))


def _send_mail(smtp: Smtp, message: EmailMessage, to: str) -> Outcome:
    """Blocking: one SMTP session (run in a thread)."""
    try:
        client: smtplib.SMTP
        if smtp.port == _IMPLICIT_TLS_PORT:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=SEND_TIMEOUT)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=SEND_TIMEOUT)
        with client:
            client.ehlo()
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if smtp.username is not None and smtp.password is not None:
                client.login(smtp.username, smtp.password)
            code, reply = client.mail(email.utils.parseaddr(smtp.sender)[1])
            if code != 250:
                return Outcome(False, f"MAIL FROM refused: {code} {reply.decode()}")
            code, reply = client.rcpt(to)
            if code not in (250, 251):
                return Outcome(False, f"RCPT TO refused: {code} {reply.decode()}")
            code, reply = client.data(message.as_bytes())
            text = f"{code} {reply.decode(errors='replace')}"
            return Outcome(code == 250, text)
    except (OSError, smtplib.SMTPException) as error:
        return Outcome(False, f"SMTP {smtp.host}:{smtp.port}: {error}")
