"""The daemon's log: records written in batches, so that a line per run does not cost
a write per run on the event loop at a thousand runs a second.

Two formats: `text` (`2026-11-27 15:04:05,123 INFO evercron.jobs: ...`; without the time
under systemd, whose journal stamps every line itself) and `json` (one object per line:
`time`, `level`, `logger`, `message`, and `job`, `run`, `node` where the record carries
them, see `evercron.logfields`; `node` is the daemon's own node unless the record names
another).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from typing import TextIO

from evercron.logfields import FIELDS
from evercron.settings import LogFormat

FLUSH_DELAY = 0.2  # seconds a record may wait in the batch
_MAX_BATCH = 1000
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """Writes formatted records to its stream a batch at a time: a record waits at most
    `delay` seconds (given `flush()` is called that often when nothing is logged, see
    `flush_forever`), and a warning or worse is written at once with what came before."""

    def __init__(self, stream: TextIO, delay: float = FLUSH_DELAY) -> None:
        super().__init__(stream)
        self._delay = delay
        self._pending: list[str] = []
        self._first_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        """Add `record` to the batch (called with the handler's lock held)."""
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        now = time.monotonic()
        if not self._pending:
            self._first_at = now
        self._pending.append(text)
        urgent = record.levelno >= logging.WARNING
        if urgent or now - self._first_at >= self._delay or len(self._pending) >= _MAX_BATCH:
            self._write()

    def flush(self) -> None:
        """Write what is waiting."""
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def _write(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            self.stream.write(self.terminator.join(batch) + self.terminator)
            self.stream.flush()
        except Exception:  # as StreamHandler does: a broken log must not stop the daemon
            self.handleError(logging.makeLogRecord({"msg": batch[0]}))


class SecondCachingFormatter(logging.Formatter):
    """`logging.Formatter` with the default time format, formatting each second's date
    and time once (a thousand records a second share it) instead of once per record."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The record's local time as `2026-11-27 15:04:05,123`."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `time` (UTC, ISO 8601, milliseconds),
    `level`, `logger`, `message`, the `evercron.logfields` attributes the record has and,
    for an error with a traceback, `exception`. With `node`, every line without a node of
    its own names that one (the node this daemon runs as)."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self._node = node
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line of JSON."""
        entry: dict[str, object] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if self._node is not None:
            entry.setdefault("node", self._node)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # a thousand records a second share the date
            moment = dt.datetime.fromtimestamp(second, dt.UTC)
            self._second_text = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"


def under_journal(stream: TextIO) -> bool:
    """Whether `stream` is systemd's journal: `JOURNAL_STREAM` names its device and inode
    (systemd.exec(5) says to compare them, as a child may have redirected stderr)."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{found.st_dev}:{found.st_ino}"


def formatter_for(
    log_format: LogFormat, stream: TextIO, node: str | None = None
) -> logging.Formatter:
    """The formatter of `log_format` for records written to `stream` (JSON lines name
    `node` unless a record names its own)."""
    if log_format == "json":
        return JsonFormatter(node)
    return SecondCachingFormatter(_JOURNAL_FORMAT if under_journal(stream) else _FORMAT)


def configure(
    stream: TextIO, log_format: LogFormat = "text", node: str | None = None
) -> BatchedStreamHandler:
    """Log INFO and above to `stream` in batches, as `log_format` (JSON lines name
    `node`); the handler to flush."""
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(formatter_for(log_format, stream, node))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # The format names no thread, process or source line: don't look them up for every
    # record. See the logging HOWTO's "Optimization" section.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    return handler


def flush_all() -> None:
    """Write every batch waiting in the root logger's handlers."""
    for handler in logging.getLogger().handlers:
        handler.flush()


async def flush_forever(interval: float = FLUSH_DELAY) -> None:
    """Flush the batches every `interval` seconds, so that no record waits longer."""
    while True:
        await asyncio.sleep(interval)
        flush_all()
