"""Command lines run without a shell: recognised conservatively, and run exactly as
`/bin/sh -c` runs them (output, exit status, files, environment, errors)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from evercron.process import Command, Result, Status, descriptors, start
from evercron.process.direct_line import DirectLine, Redirection, parse_direct
from evercron.process.short_memory import ShortMemory
from evercron.process.spawn import runs_without_shell
from tests.markers import Marker


@pytest.fixture(autouse=True)
def sealed_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands start through posix_spawn, as the daemon's do (its descriptors are sealed)."""
    descriptors.seal_inherited_descriptors()
    monkeypatch.setattr(descriptors, "_sealed", True)


_TRUNCATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


@pytest.mark.parametrize(
    ("line", "argv", "redirections"),
    [
        ("date", ("date",), ()),
        ("date +%s.%N >> /tmp/f", ("date", "+%s.%N"), (Redirection(1, "/tmp/f", _APPEND),)),
        (
            "sort < in > out",
            ("sort",),
            (Redirection(0, "in", os.O_RDONLY), Redirection(1, "out", _TRUNCATE)),
        ),
        ("grep 'a b' \"c d\" ''", ("grep", "a b", "c d", ""), ()),
        ("x 2>&1", ("x",), (Redirection(2, source=1),)),
        ("x >&2", ("x",), (Redirection(1, source=2),)),
        ("x 2>/dev/null <&-", ("x",), (Redirection(2, "/dev/null", _TRUNCATE), Redirection(0))),
        ("x 3>f 4>&3", ("x",), (Redirection(3, "f", _TRUNCATE), Redirection(4, source=3))),
        ("x >> 'a file'", ("x",), (Redirection(1, "a file", _APPEND),)),
        ("/usr/bin/env -i A=1", ("/usr/bin/env", "-i", "A=1"), ()),
        ("x 2 >f", ("x", "2"), (Redirection(1, "f", _TRUNCATE),)),  # `2` is an argument
        ("> f date", ("date",), (Redirection(1, "f", _TRUNCATE),)),  # before the program
    ],
)
def test_shell_free_lines_are_understood(
    line: str, argv: tuple[str, ...], redirections: tuple[Redirection, ...]
) -> None:
    assert parse_direct(line) == DirectLine(argv, redirections)


@pytest.mark.parametrize(
    "line",
    [
        "echo hi",  # a builtin
        "exec date",
        "FOO=1 date",
        "date; rm x",
        "date && x",
        "date | x",
        "date &",
        "(date)",
        "x $HOME",
        "x ${A}",
        "x $(y)",
        "x `y`",
        "ls *.txt",
        "ls a?",
        "ls [ab]",
        "ls ~",
        "ls {a,b}",
        "x 'a\\b'",
        'x "$A"',  # quoted, but the shell would still expand it
        "date # a comment",
        "date\nrm x",
        "cat <<EOF",
        "date >| f",
        "date <> f",
        "date>f",  # a redirection glued to a word: left to the shell
        "x 10>f",
        "x '2'>f",
        "x 2>&5",  # a descriptor the line did not open (it may be one of the daemon's)
        "x >&-  2>&1",  # 1 was closed just before
        "x >>&2",
        "x >",
        "x 'unbalanced",
        "",
        "   ",
    ],
)
def test_anything_else_needs_the_shell(line: str) -> None:
    assert parse_direct(line) is None


def _run(line: str, **options: object) -> Result:
    """Run `line` as a run tracked by its session (no cgroup, not held): shell-free
    when it can be."""

    async def scenario() -> Result:
        command = Command(line, tracking="session", timeout=20, **options)  # type: ignore[arg-type]
        process = await start(command, in_bulk=True)
        return await process.wait()

    return asyncio.run(scenario())


def _shell(line: str) -> Result:
    """The same line through `/bin/sh -c` (after a `:`, it is never shell-free)."""
    return _run(f": ; {line}")


def test_the_program_is_the_main_process_with_no_shell_in_between() -> None:
    command = Command("cat /proc/self/stat", tracking="session")
    assert runs_without_shell(command)
    result = _run("cat /proc/self/stat")
    assert result.status is Status.SUCCEEDED
    fields = result.output.text().split()
    assert int(fields[0]) == result.pid and fields[1] == "(cat)"
    assert int(fields[3]) == os.getpid()  # its parent is us
    assert int(fields[5]) == result.pid  # it leads its own session


@pytest.mark.parametrize(
    "line",
    [
        "date +%Y >> {d}/a",
        "sort -r < {d}/in",
        "cat {d}/in {d}/missing 2>&1",
        "cat {d}/missing 2> {d}/err",
        "cat {d}/in >&2",
        "ls /proc/self/fd 3> {d}/three 4>&3",
        "cat 0<&- {d}/in",
        "env",
        "sh -c 'exit 3'",
        "no-such-program-xyz --flag",
        "{d}/not-executable",
        "{d}/no-shebang",
        "date >> {d}/no/such/dir",
        "cat < {d}/missing",
        "{d}",
    ],
)
def test_it_behaves_as_the_shell_does(tmp_path: Path, line: str) -> None:
    direct_dir, shell_dir = tmp_path / "direct", tmp_path / "shell"
    for where in (direct_dir, shell_dir):
        where.mkdir()
        (where / "in").write_text("b\na\n")
        (where / "not-executable").write_text("#!/bin/sh\necho hi\n")
        (where / "no-shebang").write_text("echo from a script without a shebang\nexit 4\n")
        (where / "no-shebang").chmod(0o755)
    assert runs_without_shell(Command(line.format(d=direct_dir)))
    direct = _run(line.format(d=direct_dir))
    shell = _shell(line.format(d=shell_dir))
    assert (direct.status, direct.exit_code) == (shell.status, shell.exit_code)

    def same(text: str) -> str:  # the shell's own line number differs: 1 against 1
        return text.replace(str(direct_dir), "D").replace(str(shell_dir), "D")

    direct_lines = sorted(same(direct.output.text()).splitlines())
    shell_lines = sorted(same(shell.output.text()).splitlines())
    if line == "env":  # the shell-free run has no shell-set variables to differ on
        direct_lines = [v for v in direct_lines if not v.startswith("EVERCRON_RUN_ID=")]
        shell_lines = [v for v in shell_lines if not v.startswith("EVERCRON_RUN_ID=")]
    assert direct_lines == shell_lines
    for name in ("a", "err", "three"):
        assert (direct_dir / name).exists() == (shell_dir / name).exists()
        if (direct_dir / name).exists():
            assert same((direct_dir / name).read_text()) == same((shell_dir / name).read_text())


def test_the_working_directory_is_exported_as_pwd_like_the_shell_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PWD", "/nonexistent-or-elsewhere")
    result = _run("env")
    values = dict(line.split("=", 1) for line in result.output.text().splitlines() if "=" in line)
    assert values["PWD"] == os.getcwd()


def test_a_missing_program_is_found_once_installed(tmp_path: Path) -> None:
    program = tmp_path / "bin" / "evercron-test-tool"
    path = f"{tmp_path / 'bin'}:/usr/bin:/bin"
    first = _run("evercron-test-tool", env={"PATH": path})
    assert first.exit_code == 127 and "not found" in first.output.text()
    program.parent.mkdir()
    program.write_text("#!/bin/sh\necho installed\n")
    program.chmod(0o755)
    time.sleep(1.1)  # past the lookup's memory (a shell's hash table, for a second)
    assert _run("evercron-test-tool", env={"PATH": path}).output.text() == "installed\n"


def test_short_memory_forgets_after_its_time() -> None:
    calls: list[str] = []
    memory: ShortMemory[str, int] = ShortMemory(0.2)

    def compute(key: str) -> int:
        calls.append(key)
        return len(calls)

    assert memory.get("a", compute) == 1
    assert memory.get("a", compute) == 1
    assert memory.get("b", compute) == 2
    time.sleep(0.25)
    assert memory.get("a", compute) == 3
    assert calls == ["a", "b", "a"]


def test_an_escaped_orphan_of_a_shell_free_run_is_ended_with_it() -> None:
    # `setsid -f` forks a child into a session of its own and exits at once: the child
    # comes back to us as an orphan and is recognised by the run's EVERCRON_RUN_ID.
    marker = Marker()
    line = f"setsid -f {marker.sleep()}"
    assert runs_without_shell(Command(line))
    started = time.monotonic()
    result = _run(line, kill_grace=5)
    assert result.status is Status.SUCCEEDED
    assert time.monotonic() - started < 30
    assert not marker.alive()
