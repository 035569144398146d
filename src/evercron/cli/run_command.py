"""`evercron run`: run one command under evercron's process rules, like timeout(1)."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from evercron.cli.errors import CliError
from evercron.process import Command, OutputChunk, Result, RunningProcess, Status, start
from evercron.units import parse_duration

_INTERRUPT_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None
    if param.name == "timeout" and seconds <= 0:
        raise click.BadParameter("must be more than 0", param=param)
    return seconds


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.option(
    "--timeout",
    callback=_duration,
    metavar="DURATION",
    help="End the whole process tree after this long (90, 1.5s, 2m, 1h30m).",
)
@click.option(
    "--kill-grace",
    callback=_duration,
    metavar="DURATION",
    default="10s",
    show_default=True,
    help="Time between SIGTERM and SIGKILL.",
)
@click.option(
    "--shell", "use_shell", is_flag=True, help="Run the arguments as one /bin/sh -c command line."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(
    timeout: float | None, kill_grace: float, use_shell: bool, command: tuple[str, ...]
) -> None:
    """Run COMMAND once with evercron's process rules; output passes through.

    Exit code as timeout(1): the command's own; 124 when the deadline fired; 128+N when it
    died of signal N; 127 not found, 126 not executable, 125 could not start it. Ctrl-C or
    SIGTERM ends the whole tree first, then exits 130 or 143.

    Example: evercron run --timeout 5s -- bash -c 'sleep 30 & sleep 30'
    """
    spec = Command(
        " ".join(command) if use_shell else list(command),
        timeout=timeout,
        kill_grace=kill_grace,
        max_output=0,
    )
    result, interrupted = asyncio.run(_run(spec))
    if result.error is not None:
        raise CliError(result.error, exit_code=result.shell_exit_code)
    if interrupted is not None:
        sys.exit(_INTERRUPT_EXIT[interrupted])
    sys.exit(result.shell_exit_code)


async def _run(spec: Command) -> tuple[Result, signal.Signals | None]:
    loop = asyncio.get_running_loop()
    interrupted: list[signal.Signals] = []
    process: RunningProcess | None = None
    killing: list[asyncio.Task[Result]] = []

    def on_signal(signum: signal.Signals) -> None:
        interrupted.append(signum)
        if process is not None:
            killing.append(loop.create_task(process.kill()))

    # Handlers first: a signal that arrives while the command starts still ends its tree.
    for signum in _INTERRUPT_EXIT:
        loop.add_signal_handler(signum, on_signal, signum)
    process = await start(spec, _pass_through)
    if interrupted:
        killing.append(loop.create_task(process.kill()))
    result = await process.wait()
    if interrupted and result.status is not Status.KILLED:
        interrupted.clear()  # it ended on its own before the signal took effect
    return result, interrupted[0] if interrupted else None


def _pass_through(chunk: OutputChunk) -> None:
    target = sys.stdout.buffer if chunk.stream == "stdout" else sys.stderr.buffer
    target.write(chunk.data)
    target.flush()
