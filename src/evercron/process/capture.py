"""Bounded output capture: keep the first and last parts, count everything."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Bytes read from one stream, with the wall-clock time they arrived and their offset
    (position in the combined output of both streams, counting every byte ever produced)."""

    stream: Stream
    data: bytes
    at: float
    offset: int


@dataclass(frozen=True)
class CapturedOutput:
    """What was kept of a command's output.

    `head` and `tail` are chunks in arrival order; when `truncated`, the bytes between them
    were dropped (`total_bytes` counts everything produced).
    """

    head: tuple[OutputChunk, ...]
    tail: tuple[OutputChunk, ...]
    total_bytes: int
    truncated: bool

    @property
    def chunks(self) -> tuple[OutputChunk, ...]:
        """Every kept chunk, in order."""
        return self.head + self.tail

    def data(self, stream: Stream | None = None) -> bytes:
        """The kept bytes of one stream, or of both interleaved as they arrived."""
        return b"".join(c.data for c in self.chunks if stream is None or c.stream == stream)

    def text(self, stream: Stream | None = None) -> str:
        """`data()` decoded as UTF-8, invalid bytes replaced."""
        return self.data(stream).decode("utf-8", errors="replace")


class OutputCapture:
    """Accumulates output within `max_bytes`: the first half as it comes, the last half in a
    ring. Memory stays within `max_bytes` plus one chunk whatever the output size."""

    def __init__(self, max_bytes: int) -> None:
        self._head_limit = max_bytes - max_bytes // 2
        self._tail_limit = max_bytes // 2
        self._head: list[OutputChunk] = []
        self._head_size = 0
        self._tail: deque[OutputChunk] = deque()
        self._tail_size = 0
        self.total_bytes = 0

    def add(self, stream: Stream, data: bytes, at: float) -> OutputChunk:
        """Record a chunk; return it with its offset."""
        chunk = OutputChunk(stream, data, at, self.total_bytes)
        self.total_bytes += len(data)
        room = self._head_limit - self._head_size
        if room > 0:
            kept = (
                chunk if len(data) <= room else OutputChunk(stream, data[:room], at, chunk.offset)
            )
            self._head.append(kept)
            self._head_size += len(kept.data)
            data = data[room:]
            if not data:
                return chunk
            chunk_rest = OutputChunk(stream, data, at, chunk.offset + room)
        else:
            chunk_rest = chunk
        self._add_tail(chunk_rest)
        return chunk

    def _add_tail(self, chunk: OutputChunk) -> None:
        if self._tail_limit == 0:
            return
        if len(chunk.data) > self._tail_limit:
            cut = len(chunk.data) - self._tail_limit
            chunk = OutputChunk(chunk.stream, chunk.data[cut:], chunk.at, chunk.offset + cut)
        self._tail.append(chunk)
        self._tail_size += len(chunk.data)
        while self._tail_size > self._tail_limit:
            oldest = self._tail[0]
            excess = self._tail_size - self._tail_limit
            if len(oldest.data) <= excess:
                self._tail.popleft()
                self._tail_size -= len(oldest.data)
            else:
                self._tail[0] = OutputChunk(
                    oldest.stream, oldest.data[excess:], oldest.at, oldest.offset + excess
                )
                self._tail_size -= excess

    def result(self) -> CapturedOutput:
        """The kept output so far."""
        kept = self._head_size + self._tail_size
        return CapturedOutput(
            tuple(self._head), tuple(self._tail), self.total_bytes, kept < self.total_bytes
        )
