"""A single external command replaces the trampoline shell instead of being forked by it;
everything else runs as written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evercron.process import Command, Result, Status, start
from evercron.process.shell_exec import exec_form, is_single_program


@pytest.mark.parametrize(
    "script",
    [
        "date +%s.%N >> /tmp/f",
        "date",
        "/usr/bin/env",
        "ls *.txt 2>&1",
        "sort < in > out",
        "grep 'a;b|c' file",
        'python3 -c "print(1)"',
        "date # a comment",
    ],
)
def test_single_programs_are_recognised(script: str) -> None:
    assert is_single_program(script)
    assert exec_form(script) == f"exec {script}"


@pytest.mark.parametrize(
    "script",
    [
        "echo hi",  # a builtin
        "cd /tmp",
        "exec date",
        "if true",
        "FOO=1 date",  # an assignment first
        "date; rm x",
        "date && x",
        "date || x",
        "date | x",
        "date &",
        "(date)",
        "date a#b; rm x",  # not a comment: a `;` follows
        "x $(y)",
        "x `y`",
        "date\nrm x",
        "cat <<EOF",
        ">f date",
        "date >| f",
        "echo 'unbalanced",
        "",
        "   ",
    ],
)
def test_anything_else_is_left_as_written(script: str) -> None:
    assert not is_single_program(script)
    assert exec_form(script) == script


def _run_held(script: str) -> Result:
    """Run `script` through the trampoline (a held start), released at once."""

    async def scenario() -> Result:
        process = await start(Command(script, timeout=20), held=True)
        process.release()
        return await process.wait()

    return asyncio.run(scenario())


def test_the_program_is_the_runs_main_process() -> None:
    single = _run_held("cat /proc/self/stat")
    assert single.status is Status.SUCCEEDED
    assert int(single.output.text().split()[0]) == single.pid  # no shell in between
    two = _run_held("cat /proc/self/stat; true")
    assert two.status is Status.SUCCEEDED
    assert int(two.output.text().split()[0]) != two.pid  # forked by the shell


def test_exit_statuses_and_redirections_are_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "out"
    assert _run_held(f"date +%s >> {target}").exit_code == 0
    assert _run_held(f"date +%s >> {target}").exit_code == 0
    assert len(target.read_text().splitlines()) == 2
    assert _run_held("sh -c 'exit 7'").exit_code == 7
    missing = _run_held("no-such-program-xyz --flag")
    assert missing.exit_code == 127 and "not found" in missing.output.text()
    unwritable = _run_held(f"date >> {tmp_path}/no/such/dir")
    assert unwritable.exit_code == 2 and "cannot create" in unwritable.output.text()
