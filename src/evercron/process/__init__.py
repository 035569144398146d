"""Run one command the way a scheduler must: in its own process group, output streamed
and captured within bounds, a deadline that ends the whole tree, and nothing left behind.

>>> import asyncio
>>> from evercron.process import Command, run
>>> result = asyncio.run(run(Command("echo hello", timeout=5)))
>>> result.status, result.exit_code, result.output.text()
(<Status.SUCCEEDED: 'succeeded'>, 0, 'hello\\n')

Linux only. The calling process becomes a child subreaper on first use, so orphaned
descendants of commands come back to it and are ended and reaped.
"""

from evercron.process.capture import CapturedOutput, OutputChunk, Stream
from evercron.process.cgroup import limit_support
from evercron.process.descriptors import seal_inherited_descriptors
from evercron.process.hold import HeldGroup
from evercron.process.result import Result, Status
from evercron.process.runner import OutputSink, RunningProcess, run, start
from evercron.process.spec import LIMITS, Command, KillMode, Tracking

__all__ = [
    "LIMITS",
    "CapturedOutput",
    "Command",
    "HeldGroup",
    "KillMode",
    "OutputChunk",
    "OutputSink",
    "Result",
    "RunningProcess",
    "Status",
    "Stream",
    "Tracking",
    "limit_support",
    "run",
    "seal_inherited_descriptors",
    "start",
]
