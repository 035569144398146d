"""The epoll set that watches runs' pidfds and pipes on behalf of the event loop."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from evercron.process.read_watch import ReadWatch, read_watch


def test_readable_descriptors_call_back_until_removed() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        watch = read_watch(loop)
        assert read_watch(loop) is watch  # one per loop
        calls: list[str] = []
        first, first_in = os.pipe()
        second, second_in = os.pipe()

        def on_first() -> None:
            calls.append("first")
            os.read(first, 10)
            watch.remove(second)  # removed while it is ready too: never called after

        watch.add(first, on_first)
        watch.add(second, lambda: calls.append("second"))
        await asyncio.sleep(0.05)
        assert calls == []  # nothing readable yet
        os.write(first_in, b"x")
        await asyncio.sleep(0.05)
        assert calls == ["first"]  # read: no longer readable, not called again
        os.write(first_in, b"y")
        os.write(second_in, b"y")
        await asyncio.sleep(0.05)
        watch.remove(first)
        os.write(first_in, b"z")
        await asyncio.sleep(0.05)
        for fd in (first, first_in, second, second_in):
            os.close(fd)
        return calls

    calls = asyncio.run(scenario())
    # The second pipe may have been reported before or after the first in that round.
    assert calls in (["first", "first"], ["first", "second", "first"])


def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    async def scenario() -> tuple[list[str], list[dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        watch = read_watch(loop)
        calls: list[str] = []
        broken, broken_in = os.pipe()
        working, working_in = os.pipe()

        def fail() -> None:
            watch.remove(broken)
            raise RuntimeError("boom")

        def work() -> None:
            calls.append("work")
            watch.remove(working)

        watch.add(broken, fail)
        watch.add(working, work)
        os.write(broken_in, b"x")
        os.write(working_in, b"x")
        await asyncio.sleep(0.05)
        for fd in (broken, broken_in, working, working_in):
            os.close(fd)
        return calls, errors

    calls, errors = asyncio.run(scenario())
    assert calls == ["work"]
    assert len(errors) == 1 and str(errors[0]["exception"]) == "boom"


def test_the_epoll_set_of_a_closed_loop_is_released() -> None:
    async def use() -> ReadWatch:
        return read_watch(asyncio.get_running_loop())

    first = asyncio.new_event_loop()  # kept referenced: only its closing releases the set
    watch = first.run_until_complete(use())
    first.close()
    assert not watch._poll.closed
    second = asyncio.new_event_loop()
    second.run_until_complete(use())  # any later use releases the sets of closed loops
    second.close()
    assert watch._poll.closed
