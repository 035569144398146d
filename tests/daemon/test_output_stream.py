"""A run's output stream (`?follow=1`) carries any bytes unchanged: carriage returns,
invalid UTF-8, a character split across two writes and text that looks like SSE fields
come out exactly as stored, live or from the store, through the API and `evercron logs -f`."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evercron.model import RunStatus, Trigger
from evercron.scheduler import LiveEvent, LiveOutput
from evercron.server import output_stream
from evercron.server.context import ApiContext
from evercron.store import Claim, RunEnd, StoredChunk
from evercron.store.sqlite import SqliteStore
from tests.daemon import sse
from tests.daemon.conftest import DaemonProcess, serving
from tests.helpers import run_cli

# Each printf is its own write; the sleep splits the euro sign (E2 82 AC) across two reads.
# (Where the stderr text lands among the stdout chunks depends on which pipe is read first.)
TRICKY = (
    r"printf 'one\rtwo\r\nthree\n'; printf 'bad \377\376 bytes\n'; printf 'err\r' >&2; "
    r"printf 'split \342\202'; sleep 0.3; printf '\254 euro\n'; "
    r"""printf 'data: forged\n\nevent: end\rdata: {"offset": 0, "status": "failed"}\r\r'; """
    r"printf 'id: 99\n\nno newline at the end\r'"
)
TRICKY_STDERR = b"err\r"
TRICKY_BYTES = (
    b"one\rtwo\r\nthree\nbad \xff\xfe bytes\nsplit \xe2\x82\xac euro\n"
    b'data: forged\n\nevent: end\rdata: {"offset": 0, "status": "failed"}\r\r'
    b"id: 99\n\nno newline at the end\r"
)
LOGS = [sys.executable, "-m", "evercron", "logs"]
NOW = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with serving(tmp_path_factory.mktemp("stream") / "state") as started:
        yield started


@pytest.fixture
def flag(tmp_path: Path) -> Path:
    """A file the job waits for before it writes: the test decides when output starts."""
    return tmp_path / "go"


def _waiting(flag: Path, command: str) -> str:
    return f"while [ ! -e {flag} ]; do sleep 0.02; done; {command}"


def _add(daemon: DaemonProcess, name: str, command: str, **settings: Any) -> None:
    daemon.add_job(name=name, schedule="@yearly", command=command, **settings)


def _stored(daemon: DaemonProcess, run_id: int) -> bytes:
    """The run's stored output, checked to be TRICKY's bytes (stderr somewhere among them)."""
    data: bytes = daemon.http.get(f"/api/v1/runs/{run_id}/output").content
    at = data.index(TRICKY_STDERR, len(b"one\rtwo\r\nthree\n") - 1)
    assert data[:at] + data[at + len(TRICKY_STDERR) :] == TRICKY_BYTES
    return data


def test_any_bytes_survive_the_stream_from_the_store(daemon: DaemonProcess) -> None:
    _add(daemon, "tricky", TRICKY)
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/tricky/trigger", 202)["id"])
    assert run["status"] == "succeeded"
    stored = _stored(daemon, run["id"])
    response, events = sse.follow(daemon.http, run["id"])
    assert response.status_code == 200
    assert sse.output_of(events) == stored
    assert sse.output_of(e for e in events if e.kind == "stderr") == TRICKY_STDERR
    assert [e.kind for e in events].count("end") == 1
    assert events[-1].kind == "end"
    assert events[-1].data == {"offset": len(stored), "status": "succeeded"}
    assert {e.kind for e in events} == {"stdout", "stderr", "end"}
    # The writer split the euro sign: the first chunk ends with its first two bytes as
    # escapes, the next starts with the last one; joined, the character is whole.
    texts = [e.data["text"] for e in events if e.kind == "stdout"]
    split = next(i for i, text in enumerate(texts) if text.endswith("\udce2\udc82"))
    assert texts[split + 1].startswith("\udcac euro\n")


def test_any_bytes_survive_the_stream_live(daemon: DaemonProcess, flag: Path) -> None:
    _add(daemon, "tricky-live", _waiting(flag, TRICKY))
    run = daemon.api("POST", "/api/v1/jobs/tricky-live/trigger", 202)
    with daemon.http.stream(
        "GET", f"/api/v1/runs/{run['id']}/output", params={"follow": 1}
    ) as response:
        assert response.status_code == 200
        flag.touch()
        events = sse.parse(response.read())
    assert events[-1].kind == "end" and events[-1].data["status"] == "succeeded"
    assert sse.output_of(events) == _stored(daemon, run["id"])


@pytest.mark.parametrize(
    "value",
    [
        "1" + "0" * 30,  # 10^30
        str(2**63),
        "-1",
        "abc",
        "5_0",
        "+5",
        "",
        "1e3",
    ],
)
def test_a_last_event_id_that_is_not_an_offset_is_a_400(daemon: DaemonProcess, value: str) -> None:
    if daemon.api("GET", "/api/v1/runs", params={"job": "plain"}) == []:
        _add(daemon, "plain", "echo plain")
        daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/plain/trigger", 202)["id"])
    run_id = daemon.api("GET", "/api/v1/runs", params={"job": "plain"})[0]["id"]
    response, _ = sse.follow(daemon.http, run_id, value)
    assert response.status_code == 400, response.text
    assert "Last-Event-ID" in response.json()["error"]


def test_the_largest_last_event_id_resumes_after_everything(daemon: DaemonProcess) -> None:
    _add(daemon, "short", "echo short")
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/short/trigger", 202)["id"])
    response, events = sse.follow(daemon.http, run["id"], str(2**63 - 1))
    assert response.status_code == 200
    assert [e.kind for e in events if e.kind != "truncated"] == ["end"]


def _logs(daemon: DaemonProcess, run_id: int, *flags: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [*LOGS, *flags, str(run_id), "--state-dir", str(daemon.state_dir)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_logs_follow_prints_the_same_bytes_as_logs(daemon: DaemonProcess, flag: Path) -> None:
    _add(daemon, "tricky-cli", _waiting(flag, TRICKY))
    run_id = daemon.api("POST", "/api/v1/jobs/tricky-cli/trigger", 202)["id"]
    follower = subprocess.Popen(
        [*LOGS, "-f", str(run_id), "--state-dir", str(daemon.state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        flag.touch()
        live_out, live_err = follower.communicate(timeout=60)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0, live_err
    whole = _logs(daemon, run_id)
    assert whole.stdout == _stored(daemon, run_id)
    assert live_out == whole.stdout
    assert f"[run {run_id} succeeded]".encode() in live_err
    assert _logs(daemon, run_id, "-f").stdout == whole.stdout  # and from the store


def test_logs_follow_of_a_truncated_output_prints_what_was_kept(daemon: DaemonProcess) -> None:
    # 6000 bytes in pieces on both streams, with CRs and invalid UTF-8, into 1 KiB.
    piece = r"printf 'out %04d \377\r\n' $i; printf 'err %04d\r' $i >&2"
    _add(daemon, "big", f"for i in $(seq 1 400); do {piece}; done", max_output="1KiB")
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/big/trigger", 202)["id"])
    assert run["output_truncated"] and run["output_bytes"] > 5000
    whole = _logs(daemon, run["id"])
    followed = _logs(daemon, run["id"], "-f")
    assert len(whole.stdout) == 1024
    assert followed.stdout == whole.stdout
    dropped = run["output_bytes"] - 1024
    assert f"[... {dropped} bytes not kept ...]".encode() in followed.stderr
    _, events = sse.follow(daemon.http, run["id"])
    assert [e.data["dropped"] for e in events if e.kind == "truncated"] == [dropped]


def test_logs_follow_json_gives_each_event_with_its_data(daemon: DaemonProcess) -> None:
    _add(daemon, "json", r"printf 'a\rb'")
    run = daemon.wait_for_run(daemon.api("POST", "/api/v1/jobs/json/trigger", 202)["id"])
    done = run_cli("logs", "-f", "--json", str(run["id"]), "--state-dir", str(daemon.state_dir))
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stdout
    assert '"event": "stdout"' in lines[0] and '"text": "a\\rb"' in lines[0]
    assert '"event": "end"' in lines[1] and '"status": "succeeded"' in lines[1]


class _Daemon:
    draining = False


class _Client:
    async def is_disconnected(self) -> bool:
        return False


def test_a_follower_joining_before_the_first_output_is_stored_misses_nothing(
    tmp_path: Path,
) -> None:
    # The launcher stores a run's first output in batches (up to half a second late)
    # while followers get it at once; the live backlog keeps only the latest bytes. A
    # follower joining in between was told the unstored bytes were "not kept".
    pieces = [bytes([ord("a") + n]) * 100 for n in range(5)]

    async def follow_one() -> bytes:
        store = SqliteStore(tmp_path / "evercron.db")
        await store.migrate()
        (claimed,) = await store.claim([Claim("job", NOW, Trigger.MANUAL)], "owner")
        assert claimed.run_id is not None
        run_id = claimed.run_id
        live = LiveOutput(backlog_bytes=250)  # only the last two pieces
        live.begin(run_id)
        for n, piece in enumerate(pieces):
            live.publish(run_id, LiveEvent("stdout", n * 100, piece))
        context = ApiContext(
            store=store,
            jobs=None,  # type: ignore[arg-type]
            live=live,
            daemon=_Daemon(),
            token="token",
            started_at=NOW,
            state_dir=str(tmp_path),
        )
        stream = output_stream.follow(context, _Client(), run_id, -1)  # type: ignore[arg-type]
        received: list[bytes] = []

        async def read() -> None:
            async for piece in stream:
                received.append(piece)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.2)  # the follower has looked in the store and found nothing
        chunks = [StoredChunk(n * 100, "stdout", 0.0, pieces[n]) for n in range(3)]
        await store.append_output(run_id, chunks)  # the first batch lands
        live.end(run_id, "succeeded", 500)
        await store.finish(run_id, RunEnd(RunStatus.SUCCEEDED, NOW, output_bytes=500))
        await asyncio.wait_for(reader, 10)
        await store.close()
        return b"".join(received)

    events = sse.parse(asyncio.run(follow_one()))
    assert [e.kind for e in events if e.kind == "truncated"] == []
    assert sse.output_of(events) == b"".join(pieces)
    assert events[-1].kind == "end"
