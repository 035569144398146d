"""What a notification says: the JSON payload, the Slack message and the mail, built from
an outbox event. Never the job's command or `env` values: the event's facts hold neither.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from evercron.notify.channels import Channel
from evercron.store import Delivery

TAIL_BYTES = 4096
"""How much of the end of a run's output a notification carries."""
_WORDS = {
    "failed": "failed",
    "recovered": "recovered",
    "succeeded": "succeeded",
    "started": "started",
    "lost": "was lost",
    "missed": "missed a firing",
    "overdue": "is overdue",
    "test": "test notification",
    "rate_limited": "notifications paused",
}
_SLACK_COLOURS = {
    "failed": "danger",
    "lost": "danger",
    "missed": "warning",
    "overdue": "warning",
    "rate_limited": "warning",
    "recovered": "good",
    "succeeded": "good",
}


@dataclass(frozen=True)
class Notice:
    """One notification, whatever carries it: `payload` is the JSON body of a webhook
    (`event`, `job`, `run`, `output_tail`, `link`, `sent_at`, and `message`, one line
    for people)."""

    payload: dict[str, Any]

    @property
    def event(self) -> str:
        """What happened: a `NotifyEvent` value, `rate_limited` or `test`."""
        return str(self.payload["event"])

    @property
    def message(self) -> str:
        """One line for people."""
        return str(self.payload["message"])


def notice_for(
    delivery: Delivery,
    channel: Channel,
    output: bytes,
    public_url: str | None,
    now: dt.datetime,
) -> Notice:
    """The notice of one delivery: its event's facts and the end of the run's `output`.
    A summary delivery (the channel's hourly limit is reached) says so instead."""
    event = delivery.event
    facts = event.run
    run = {
        "id": facts.id,
        "status": facts.status.value,
        "exit_code": facts.exit_code,
        "signal": facts.signal,
        "scheduled_at": _iso(facts.scheduled_at),
        "started_at": _iso(facts.started_at),
        "finished_at": _iso(facts.finished_at),
        "duration": _duration(facts.started_at, facts.finished_at),
        "attempt": facts.attempt,
        "node": event.node,
    }
    kind = "rate_limited" if delivery.summary else event.kind.value
    message = _message(event.job, event.kind.value, run, facts.error)
    if delivery.summary:
        hour = delivery.created_at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        resume = hour + dt.timedelta(hours=1)
        message = (
            f"{channel.name}: more than {channel.max_per_hour} notifications this hour; "
            f"none until {resume:%H:%M} UTC. Latest: {message}"
        )
    link = f"{public_url}/runs/{facts.id}" if public_url else None
    return Notice(
        {
            "event": kind,
            "job": event.job,
            "run": run,
            "output_tail": output[-TAIL_BYTES:].decode("utf-8", "replace"),
            "link": link,
            "sent_at": _stamp(now),
            "message": message,
        }
    )


def trial_notice(channel: Channel, now: dt.datetime) -> Notice:
    """The notice `evercron notify test NAME` sends through `channel`."""
    return Notice(
        {
            "event": "test",
            "job": None,
            "run": None,
            "output_tail": "",
            "link": None,
            "sent_at": _stamp(now),
            "message": f"evercron on {socket.gethostname()}: test notification through "
            f'channel "{channel.name}"',
        }
    )


def slack_body(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook message (also read by Mattermost and Rocket.Chat): the
    line for people, and the facts and output tail in an attachment."""
    payload = notice.payload
    text = _slack_escape(notice.message)
    if payload["link"]:
        text += f" (<{payload['link']}|run {payload['run']['id']}>)"
    body: dict[str, Any] = {"text": text}
    run = payload["run"]
    if run is not None:
        fields = [
            {"title": title, "value": _slack_escape(str(run[key])), "short": True}
            for title, key in (
                ("Status", "status"),
                ("Exit code", "exit_code"),
                ("Signal", "signal"),
                ("Duration", "duration"),
                ("Scheduled", "scheduled_at"),
                ("Node", "node"),
            )
            if run.get(key) is not None
        ]
        attachment: dict[str, Any] = {
            "color": _SLACK_COLOURS.get(notice.event, "#999999"),
            "fields": fields,
        }
        if payload["output_tail"]:
            attachment["text"] = f"```{_slack_escape(payload['output_tail'])}```"
        body["attachments"] = [attachment]
    return body


def mail_message(notice: Notice, sender: str, to: str) -> EmailMessage:
    """The mail: a subject with job and event, the facts and the output tail."""
    payload = notice.payload
    message = EmailMessage()
    job = payload["job"] or "evercron"
    message["Subject"] = f"[evercron] {job}: {_WORDS.get(notice.event, notice.event)}"
    message["From"] = sender
    message["To"] = to
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=_domain(sender))
    lines = [notice.message, ""]
    if payload["run"] is not None:
        lines += [f"{key}: {value}" for key, value in payload["run"].items() if value is not None]
    if payload["link"]:
        lines += ["", payload["link"]]
    if payload["output_tail"]:
        lines += ["", f"The end of its output (at most {TAIL_BYTES} bytes):", ""]
        lines += [payload["output_tail"]]
    message.set_content("\n".join(lines))
    return message


def _message(job: str, kind: str, run: dict[str, Any], error: str | None) -> str:
    words = f"{job} {_WORDS.get(kind, kind)}"
    details = []
    if run["id"] is not None:
        details.append(f"run {run['id']}")
    if kind not in ("started", "overdue", "missed") and run["status"] != "succeeded":
        if run["signal"]:
            details.append(str(run["signal"]))
        elif run["exit_code"] is not None:
            details.append(f"exit {run['exit_code']}")
        if run["status"] not in ("failed", None) and kind == "failed":
            details.append(str(run["status"]))
    if error and kind in ("missed", "lost", "failed"):
        details.append(error)
    return f"{words} ({', '.join(details)})" if details else words


def _iso(moment: dt.datetime | None) -> str | None:
    """A time as ISO 8601 in UTC with its offset."""
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


def _duration(started: dt.datetime | None, finished: dt.datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return round((finished - started).total_seconds(), 3)


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def _slack_escape(text: str) -> str:
    """Slack's three control characters (its message formatting documentation)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _domain(sender: str) -> str:
    address = email.utils.parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"
