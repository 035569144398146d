"""docs/prometheus/alerts.yml: valid for Prometheus, firing as its tests say, and built on
metric names the daemon really exposes."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from evercron.metrics.exposition import render_totals
from evercron.store import JobSchedule

RULES = Path(__file__).parent.parent / "docs" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    # Never skipped: `make test` installs it (scripts/ensure-promtool).
    assert promtool, "promtool is missing: run scripts/ensure-promtool (Debian's prometheus)"
    return subprocess.run(
        [promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_the_rules() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_the_alerts_fire_as_their_tests_say() -> None:
    tested = _promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rules_use_metrics_the_daemon_exposes() -> None:
    text = render_totals(
        [JobSchedule("backup", "0 3 * * *", None, False)],
        {"run_duration_seconds|backup|3": 1, "notifications_total|ops|sent": 1},
        {"backup": dt.datetime.now(dt.UTC)},
        Counter(),
    )
    exposed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    used = set(re.findall(r"\bevercron_[a-z_]+", (RULES / "alerts.yml").read_text()))
    assert used and used <= exposed, used - exposed
