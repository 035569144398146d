"""`evercron run` as a user runs it: exit codes like timeout(1), output passed through."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import EVERCRON, run_cli
from tests.markers import Marker


def test_output_passes_through_and_exit_code_is_kept() -> None:
    done = run_cli("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_timeout_is_124_and_leaves_nothing(marker: Marker) -> None:
    done = run_cli(
        "run",
        "--timeout",
        "1s",
        "--kill-grace",
        "2",
        "--",
        "bash",
        "-c",
        f"{marker.sleep()} & {marker.sleep()}",
    )
    assert done.returncode == 124
    assert marker.alive() == []


def test_timeout_is_124_even_when_sigkill_was_needed(marker: Marker) -> None:
    done = run_cli(
        "run",
        "--timeout",
        "0.5",
        "--kill-grace",
        "0.5",
        "--",
        "bash",
        "-c",
        f"trap '' TERM; {marker.sleep()} & wait",
    )
    assert done.returncode == 124
    assert marker.alive() == []


def test_death_by_signal_is_128_plus_n() -> None:
    done = run_cli("run", "--shell", "--", "kill -TERM $$")
    assert done.returncode == 128 + signal.SIGTERM


def test_start_failures(tmp_path: Path) -> None:
    missing = run_cli("run", "--", "no-such-program-xyz")
    assert missing.returncode == 127
    assert missing.stderr == (
        'evercron: error: exec: "no-such-program-xyz": executable file not found in $PATH\n'
    )
    plain_file = tmp_path / "not-executable"
    plain_file.write_text("echo hi\n")
    assert run_cli("run", "--", str(plain_file)).returncode == 126


def test_bad_durations_are_usage_errors() -> None:
    for value in ("0", "soon", "-1"):
        done = run_cli("run", "--timeout", value, "--", "true")
        assert done.returncode == 2, value
        assert len(done.stderr.splitlines()) == 1


def test_sigterm_and_ctrl_c_end_the_tree_first(marker: Marker) -> None:
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        child = subprocess.Popen(
            [*EVERCRON, "run", "--", "bash", "-c", f"{marker.sleep()} & {marker.sleep()}"]
        )
        deadline = time.monotonic() + 10
        while len(marker.alive()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signum)
        assert child.wait(timeout=15) == code
        assert marker.alive() == []


def test_python_m_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "evercron", "run", "--", "true"], check=False)
    assert done.returncode == 0
