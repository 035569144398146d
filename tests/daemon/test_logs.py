"""The daemon's batched log handler: nothing lost, nothing late, warnings at once."""

from __future__ import annotations

import asyncio
import io
import logging
import time

from evercron.daemon import logs
from evercron.daemon.logs import BatchedStreamHandler, flush_forever


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
