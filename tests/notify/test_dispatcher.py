"""The delivery loop against real receivers: a webhook server on loopback (signature
checked) and an SMTP server. Retries, limits, give-ups and several senders at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from evercron.model import Job, NotifyEvent, RunStatus, Trigger
from evercron.notify.channels import Channel, Smtp
from evercron.notify.dispatcher import Dispatcher, UnknownChannel
from evercron.notify.senders import Outcome
from evercron.store import Claim, DeliveryState, RunEnd, Store, StoredChunk
from evercron.store.sqlite import SqliteStore
from tests.notify.receivers import MailReceiver, WebhookReceiver

NOW = dt.datetime.now(dt.UTC)


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (as the other tests do with asyncio.run)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def dispatching(
    path: Path, channels: Sequence[Channel], smtp: Smtp | None = None, owner: str = "me"
) -> AsyncIterator[tuple[Store, Dispatcher, list[tuple[str, str]]]]:
    store = SqliteStore(path)
    await store.migrate()
    counted: list[tuple[str, str]] = []
    dispatcher = Dispatcher(
        store,
        owner,
        channels,
        smtp,
        "https://cron.example.com",
        poll=0.1,
        counted=lambda channel, outcome: counted.append((channel, outcome)),
    )
    await store.want_events(dispatcher.policy("node-1"))
    task = asyncio.create_task(dispatcher.run())
    try:
        yield store, dispatcher, counted
    finally:
        await dispatcher.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def state_of(store: Store) -> DeliveryState | None:
    """The state of the only delivery (None before there is one)."""
    found = await store.list_deliveries()
    return found[0].state if found else None


async def finished_run(
    store: Store, status: RunStatus, job: str = "backup", output: bytes = b""
) -> int:
    (claimed,) = await store.claim([Claim(job, NOW, Trigger.MANUAL)], "me")
    run_id = claimed.run_id
    assert run_id is not None
    await store.mark_started(run_id, 10, 20, NOW)
    pieces = range(0, len(output), 700)  # chunks as the launcher stores them
    chunks = [StoredChunk(at, "stdout", 0.0, output[at : at + 700]) for at in pieces]
    await store.append_output(run_id, chunks)
    end = RunEnd(
        status,
        NOW + dt.timedelta(seconds=1.5),
        exit_code=0 if status is RunStatus.SUCCEEDED else 3,
        output_bytes=len(output),
    )
    assert await store.finish(run_id, end)
    return run_id


async def until_state(store: Store, state: DeliveryState, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while await state_of(store) != state:
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@synchronous
async def test_a_failure_reaches_the_webhook_signed_with_its_facts(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        channel = Channel("hook", receiver.url, secret="s3cret")
        async with dispatching(tmp_path / "db", [channel]) as (store, dispatcher, counted):
            output = bytes(range(48, 58)) * 500 + b"\nthe end\n"  # 5009 bytes
            run_id = await finished_run(store, RunStatus.FAILED, output=output)
            dispatcher.wake()
            await until(lambda: len(receiver.requests) == 1)
            await until_state(store, DeliveryState.SENT)
        (request,) = receiver.requests
        expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Evercron-Signature"] == f"sha256={expected}"
        assert request.headers["Content-Type"] == "application/json"
        payload = request.json()
        assert set(payload) >= {"event", "job", "run", "output_tail", "link", "sent_at"}
        assert (payload["event"], payload["job"]) == ("failed", "backup")
        run = payload["run"]
        assert (run["id"], run["status"], run["exit_code"], run["signal"]) == (
            run_id,
            "failed",
            3,
            None,
        )
        assert (run["attempt"], run["node"], run["duration"]) == (1, "node-1", 1.5)
        assert dt.datetime.fromisoformat(run["finished_at"]).utcoffset() == dt.timedelta(0)
        assert payload["output_tail"] == output[-4096:].decode()
        assert payload["link"] == f"https://cron.example.com/runs/{run_id}"
        assert abs(dt.datetime.fromisoformat(payload["sent_at"]).timestamp() - time.time()) < 60
        assert counted == [("hook", "sent")]


@synchronous
async def test_500_then_200_is_retried_with_backoff_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookReceiver([500, 500, 200]) as receiver:
        channel = Channel("hook", receiver.url, retry_backoff=0.2)
        async with dispatching(tmp_path / "db", [channel]) as (store, dispatcher, counted):
            await finished_run(store, RunStatus.FAILED)
            dispatcher.wake()
            await until_state(store, DeliveryState.SENT)
            (delivery,) = await store.list_deliveries()
        first, second, third = receiver.requests
        assert second.at - first.at >= 0.2 and third.at - second.at >= 0.4  # doubling
        assert third.at - first.at < 5
        assert (delivery.attempts, delivery.outcome, delivery.last_error) == (
            3,
            "HTTP 200",
            "HTTP 500: ok",
        )
        assert counted == [("hook", "failed"), ("hook", "failed"), ("hook", "sent")]
        failures = [r for r in caplog.records if r.name == "evercron.notify"]
        assert len(failures) == 1 and "HTTP 500" in failures[0].getMessage()
        assert failures[0].levelno == logging.ERROR


@synchronous
async def test_a_burst_beyond_max_per_hour_is_one_summary_then_silence(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        channel = Channel("hook", receiver.url, max_per_hour=3, every_run=True)
        async with dispatching(tmp_path / "db", [channel]) as (store, dispatcher, counted):
            for _ in range(10):
                await finished_run(store, RunStatus.FAILED)
            dispatcher.wake()
            await until(lambda: len(receiver.requests) == 4)
            await asyncio.sleep(0.3)  # and nothing more comes
            states = [d.state for d in await store.list_deliveries()]
        assert len(receiver.requests) == 4
        events = sorted(r.json()["event"] for r in receiver.requests)  # (sent side by side)
        assert events == ["failed"] * 3 + ["rate_limited"]
        (summary,) = (r.json() for r in receiver.requests if r.json()["event"] != "failed")
        assert "more than 3 notifications this hour" in summary["message"]
        assert states.count(DeliveryState.SUPPRESSED) == 6
        assert counted.count(("hook", "suppressed")) == 6


@synchronous
async def test_state_changes_only_unless_every_run(tmp_path: Path) -> None:
    with WebhookReceiver() as quiet, WebhookReceiver() as noisy:
        channels = [
            Channel("quiet", quiet.url),
            Channel("noisy", noisy.url, every_run=True, events=frozenset({NotifyEvent.FAILED})),
            Channel("other", noisy.url, jobs=("db-*",)),
        ]
        async with dispatching(tmp_path / "db", channels) as (store, dispatcher, _):
            for _ in range(10):
                await finished_run(store, RunStatus.FAILED)
            await finished_run(store, RunStatus.SUCCEEDED)
            dispatcher.wake()
            await until(lambda: len(quiet.requests) == 2 and len(noisy.requests) == 10)
            await asyncio.sleep(0.3)
        assert sorted(r.json()["event"] for r in quiet.requests) == ["failed", "recovered"]
        assert len(noisy.requests) == 10  # every failure; "other" wants db-* jobs only


_ENDS = frozenset({NotifyEvent.SUCCEEDED, NotifyEvent.FAILED})


@synchronous
async def test_one_jobs_notifications_reach_a_channel_in_order(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver, WebhookReceiver() as elsewhere:
        receiver.held.set()
        channels = [
            Channel("hook", receiver.url, every_run=True, events=_ENDS),
            Channel("other", elsewhere.url, jobs=("report",)),
        ]
        async with dispatching(tmp_path / "db", channels) as (store, dispatcher, _):
            await finished_run(store, RunStatus.SUCCEEDED)
            await finished_run(store, RunStatus.FAILED)
            await finished_run(store, RunStatus.FAILED, job="report")
            dispatcher.wake()
            await until(lambda: len(receiver.requests) == 2 and len(elsewhere.requests) == 1)
            # the other job's lane and the other channel were not held up; "backup"'s
            # failure waits until its success was answered, so it cannot overtake it
            await asyncio.sleep(0.3)
            assert sorted(r.json()["job"] for r in receiver.requests) == ["backup", "report"]
            receiver.release()
            await until(lambda: len(receiver.requests) == 3)
        events = [r.json()["event"] for r in receiver.requests if r.json()["job"] == "backup"]
        assert events == ["succeeded", "failed"]


@synchronous
async def test_slack_format(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        channel = Channel("chat", receiver.url, format="slack")
        async with dispatching(tmp_path / "db", [channel]) as (store, dispatcher, _):
            await finished_run(store, RunStatus.FAILED, output=b"<oops> & more\n")
            dispatcher.wake()
            await until(lambda: len(receiver.requests) == 1)
        body = receiver.requests[0].json()
        assert body["text"].startswith("backup failed (run ")
        assert "|run " in body["text"]  # the link to the run
        (attachment,) = body["attachments"]
        assert attachment["color"] == "danger"
        assert attachment["text"] == "```&lt;oops&gt; &amp; more\n```"
        assert {"title": "Exit code", "value": "3", "short": True} in attachment["fields"]


@synchronous
async def test_mail_through_smtp(tmp_path: Path) -> None:
    with MailReceiver() as receiver:
        smtp = Smtp("127.0.0.1", receiver.port, sender="Evercron <cron@example.com>")
        channel = Channel("mail", "mailto:ops@example.com")
        async with dispatching(tmp_path / "db", [channel], smtp) as (store, dispatcher, _):
            await finished_run(store, RunStatus.FAILED, output=b"disk full\n")
            dispatcher.wake()
            await until_state(store, DeliveryState.SENT)
            (delivery,) = await store.list_deliveries()
            assert await dispatcher.trial("mail") == Outcome(True, MailReceiver.reply)
        envelope = receiver.envelopes[0]
        assert envelope.mail_from == "cron@example.com"
        assert envelope.rcpt_tos == ["ops@example.com"]
        assert delivery.outcome == MailReceiver.reply
        assert isinstance(envelope.content, bytes)
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert mail["Subject"] == "[evercron] backup: failed"
        text = mail.get_body().get_content()  # type: ignore[union-attr]
        assert "status: failed" in text and "exit_code: 3" in text and "disk full" in text


@synchronous
async def test_giving_up_and_unknown_channels(tmp_path: Path) -> None:
    with WebhookReceiver([503]) as receiver:
        channel = Channel("hook", receiver.url, retry_backoff=0.05, give_up_after=0.3)
        async with dispatching(tmp_path / "db", [channel]) as (store, dispatcher, counted):
            await finished_run(store, RunStatus.FAILED)
            dispatcher.wake()
            await until_state(store, DeliveryState.FAILED)
            (delivery,) = await store.list_deliveries()
            assert delivery.last_error == "HTTP 503: ok" and delivery.attempts >= 2
            assert counted[-1] == ("hook", "given_up")
            with pytest.raises(UnknownChannel):
                await dispatcher.trial("nope")
            assert await dispatcher.trial("hook") == Outcome(False, "HTTP 503: ok")


@synchronous
async def test_two_processes_on_one_store_send_each_notification_once(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        channel = Channel("hook", receiver.url, every_run=True, max_per_hour=1000)
        path = tmp_path / "db"
        async with (
            dispatching(path, [channel], owner="a") as (store, first, _),
            dispatching(path, [channel], owner="b") as (_, second, _),
        ):
            for _ in range(60):
                await finished_run(store, RunStatus.FAILED)
                first.wake()
                second.wake()
            await until(lambda: len(receiver.requests) >= 60)
            await asyncio.sleep(0.3)
        runs = [r.json()["run"]["id"] for r in receiver.requests]
        assert len(runs) == len(set(runs)) == 60


@synchronous
async def test_secrets_never_reach_a_payload(tmp_path: Path) -> None:
    """The event's facts are the run's, never the job's command or env values."""
    with WebhookReceiver() as receiver:
        async with dispatching(tmp_path / "db", [Channel("hook", receiver.url)]) as (
            store,
            dispatcher,
            _,
        ):
            job = Job.from_mapping(
                {
                    "name": "backup",
                    "schedule": "@daily",
                    "command": "curl -u admin:hunter2 https://x",
                    "env": {"TOKEN": "hunter2"},
                }
            )
            await store.put_job(job, NOW)
            await finished_run(store, RunStatus.FAILED)
            dispatcher.wake()
            await until(lambda: len(receiver.requests) == 1)
        assert b"hunter2" not in receiver.requests[0].body
        assert "TOKEN" not in json.dumps(receiver.requests[0].json())
