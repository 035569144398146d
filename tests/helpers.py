"""Shared test helpers: run the real `evercron` command line as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EVERCRON = [sys.executable, "-m", "evercron"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `evercron ARGS...` in a child process and capture its text output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*EVERCRON, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        check=False,
    )
