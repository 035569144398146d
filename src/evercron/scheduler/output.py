"""A run's output on its way to followers (at once) and to the store (in batches)."""

from __future__ import annotations

import asyncio
import logging

from evercron.process import OutputChunk, Result
from evercron.scheduler.live import LiveEvent, LiveOutput
from evercron.store import RetryPolicy, Store, StoredChunk, StoreError, persist

log = logging.getLogger("evercron.jobs")
FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 0.5


class OutputSink:
    """Output of one run: to followers as it comes, to the store in batches - the first
    half of `max_output` as it comes, the last half from the capture when the run ends
    (the middle of a larger output is dropped, as the capture drops it).

    A batch the store refuses for a passing reason is retried until accepted (memory stays
    bounded: at most the first half of `max_output` waits). One it refuses for good is
    counted in `lost_bytes`, so the run's record says what was not kept.
    """

    def __init__(
        self, store: Store, retry: RetryPolicy, live: LiveOutput, run_id: int, max_output: int
    ) -> None:
        self._store = store
        self._retry = retry
        self._live = live
        self._run_id = run_id
        self._head_limit = max_output - max_output // 2
        self._pending: list[StoredChunk] = []
        self._pending_bytes = 0
        self._flusher: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.total = 0
        """Bytes the command wrote so far."""
        self.lost_bytes = 0
        """Bytes meant for the store that it refused for good."""
        self.lost_reason: str | None = None

    def add(self, chunk: OutputChunk) -> None:
        """Take one chunk as the command wrote it (called on the event loop)."""
        self._live.publish(self._run_id, LiveEvent(chunk.stream, chunk.offset, chunk.data))
        self.total = chunk.offset + len(chunk.data)
        if chunk.offset < self._head_limit:
            data = chunk.data[: self._head_limit - chunk.offset]
            self._pending.append(StoredChunk(chunk.offset, chunk.stream, chunk.at, data))
            self._pending_bytes += len(data)
            if self._pending_bytes >= FLUSH_BYTES:
                self._flush()
            elif self._flusher is None:
                self._flusher = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush)

    async def close(self, result: Result) -> None:
        """Store what is left (the tail kept by the capture) and wait until every batch
        is stored or counted lost."""
        self._flush()
        tail = [
            StoredChunk(c.offset, c.stream, c.at, c.data)
            for c in result.output.tail
            if c.offset + len(c.data) > self._head_limit
        ]
        if tail:
            self._write(tail)
        while self._writes:
            await asyncio.gather(*self._writes)

    def _flush(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._pending:
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            self._write(batch)

    def _write(self, batch: list[StoredChunk]) -> None:
        task = asyncio.get_running_loop().create_task(self._store_batch(batch))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store_batch(self, batch: list[StoredChunk]) -> None:
        try:
            await persist(
                self._retry,
                f"output of run {self._run_id}",
                lambda: self._store.append_output(self._run_id, batch),
            )
        except StoreError as error:
            self.lost_bytes += sum(len(chunk.data) for chunk in batch)
            self.lost_reason = str(error)
            log.error("run %s: output not stored: %s", self._run_id, error)
