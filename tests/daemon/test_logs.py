"""The daemon's log: batched (nothing lost, nothing late, warnings at once), as text or
JSON lines, without its own time stamps under the journal."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import os
import time
from pathlib import Path

import pytest

from evercron.daemon import logs
from evercron.daemon.logs import BatchedStreamHandler, flush_forever
from evercron.logfields import about


def _logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"evercron.test.{id(handler)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger


def test_records_wait_for_the_batch_and_come_out_whole_and_in_order() -> None:
    stream = io.StringIO()
    handler = BatchedStreamHandler(stream, delay=60)
    logger = _logger(handler)
    for n in range(5):
        logger.info("run %d", n)
    assert stream.getvalue() == ""  # batched: no write per record
    handler.flush()
    assert stream.getvalue() == "".join(f"run {n}\n" for n in range(5))


def test_a_warning_is_written_at_once_with_what_came_before() -> None:
    stream = io.StringIO()
    logger = _logger(BatchedStreamHandler(stream, delay=60))
    logger.info("first")
    logger.warning("trouble")
    assert stream.getvalue() == "first\ntrouble\n"


def test_a_record_waits_at_most_the_delay() -> None:
    stream = io.StringIO()
    logger = _logger(BatchedStreamHandler(stream, delay=0.05))
    logger.info("early")
    time.sleep(0.06)
    logger.info("late")  # the batch is old enough: both go out
    assert stream.getvalue() == "early\nlate\n"

    async def quiet() -> None:
        logger.info("alone")  # nothing follows it: the flusher writes it
        flusher = asyncio.create_task(flush_forever(0.02))
        await asyncio.sleep(0.1)
        flusher.cancel()

    root = logging.getLogger()
    saved = root.handlers
    root.handlers = logger.handlers
    try:
        asyncio.run(quiet())
    finally:
        root.handlers = saved
    assert stream.getvalue().endswith("alone\n")


def test_the_time_reads_as_logging_writes_it_across_seconds() -> None:
    cached = logs.SecondCachingFormatter(logs._FORMAT)
    plain = logging.Formatter(logs._FORMAT)
    start = time.time()
    for created in (start, start + 0.001, start + 0.999, start + 1.0, start - 3600.5, start):
        record = logging.makeLogRecord({"msg": "x", "levelname": "INFO", "name": "n"})
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        assert cached.format(record) == plain.format(record)
    record = logging.makeLogRecord({"msg": "x"})
    assert cached.formatTime(record, "%H") == plain.formatTime(record, "%H")


def _record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"msg": msg, "levelno": level, "levelname": logging.getLevelName(level), **extra}
    )
    record.name = "evercron.jobs"
    return record


def test_json_lines_carry_the_fields_that_apply() -> None:
    stream = io.StringIO()
    handler = BatchedStreamHandler(stream, delay=60)
    handler.setFormatter(logs.formatter_for("json", stream))
    logger = _logger(handler)
    logger.info("run %d of %s failed", 7, "backup", extra=about(job="backup", run=7))
    logger.warning('a "quoted"\nmessage')  # one line whatever the message holds
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("trouble", extra=about(node="n1"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "run 7 of backup failed"
    assert (first["level"], first["job"], first["run"]) == ("INFO", "backup", 7)
    assert first["logger"] == f"evercron.test.{id(handler)}"
    moment = dt.datetime.fromisoformat(first["time"])
    assert abs((moment - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    assert first["time"].endswith("Z") and "." in first["time"]
    assert "job" not in second and "run" not in second and "node" not in second
    assert second["message"] == 'a "quoted"\nmessage' and second["level"] == "WARNING"
    assert third["node"] == "n1" and "ValueError: boom" in third["exception"]


def test_json_lines_name_the_daemons_node_unless_a_record_names_another() -> None:
    formatter = logs.formatter_for("json", io.StringIO(), node="n0")
    assert json.loads(formatter.format(_record("x")))["node"] == "n0"
    elsewhere = _record("y", **about(node="n1"))
    assert json.loads(formatter.format(elsewhere))["node"] == "n1"


def test_the_json_time_is_the_records_own_across_seconds() -> None:
    formatter = logs.JsonFormatter()
    for created in (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.5, 1_699_999_999.25):
        record = _record("x")
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        second = dt.datetime.fromtimestamp(int(created), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        expected = f"{second}.{int(record.msecs):03d}Z"
        assert json.loads(formatter.format(record))["time"] == expected


def test_text_lines_have_no_time_of_their_own_under_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "other", "w") as other:
        found = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{found.st_dev}:{found.st_ino}")
        record = _record("run 7 of backup succeeded")
        assert logs.formatter_for("text", journal).format(record) == (
            "INFO evercron.jobs: run 7 of backup succeeded"
        )
        # A stream that is not the journal's (stderr redirected by a child) keeps it.
        stamped = logs.formatter_for("text", other).format(record)
        assert stamped.endswith(" INFO evercron.jobs: run 7 of backup succeeded")
        assert stamped[:4].isdigit()
    monkeypatch.delenv("JOURNAL_STREAM")
    with open(tmp_path / "journal") as journal:
        assert logs.formatter_for("text", journal).format(record)[:4].isdigit()
