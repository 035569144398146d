"""Which machine boot this is, for `@reboot` jobs.

The kernel's boot id names the boot. Its boot time (/proc/stat `btime`) is wall-clock
time minus uptime, so it moves when the clock is stepped (NTP, a VM resumed): keyed by it
alone, an `@reboot` job would run again at the next restart after such a step. The store
therefore keeps the boot time first seen for each boot id, and every later daemon
process of the same boot reuses it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
PROC_STAT_PATH = Path("/proc/stat")


def current_boot() -> tuple[str, dt.datetime]:
    """This boot's id and the kernel's idea of when it started (whole seconds, UTC)."""
    boot_id = BOOT_ID_PATH.read_text().strip()
    for line in PROC_STAT_PATH.read_text().splitlines():
        if line.startswith("btime "):
            return boot_id, dt.datetime.fromtimestamp(int(line.split()[1]), dt.UTC)
    raise RuntimeError(f"no boot time in {PROC_STAT_PATH}")
