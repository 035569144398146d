"""SignalRouter: a signal reaches the loop even when the loop's self-pipe is full."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

from evercron.daemon.signals import SignalRouter


def test_a_signal_is_not_lost_when_the_loop_self_pipe_is_full() -> None:
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        router = SignalRouter(loop)
        received: list[int] = []
        router.route(signal.SIGUSR1, received.append)

        def flood() -> None:  # while the loop is blocked: nobody drains its self-pipe
            for _ in range(20_000):
                loop.call_soon_threadsafe(lambda: None)

        def block_then_signal() -> None:
            thread = threading.Thread(target=flood)
            thread.start()
            thread.join()
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)

        loop.call_soon(block_then_signal)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if received:
                break
        router.close()
        return received

    assert asyncio.run(scenario()) == [signal.SIGUSR1]
