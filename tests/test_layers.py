"""The import rules of docs/ARCHITECTURE.md, enforced: layers import only downward,
`server/` never imports `daemon/`, and only `store/` knows a backend."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent.parent / "src" / "evercron"

# Each layer and the evercron packages it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "cron": {"units"},
    "units": set(),
    "text": set(),
    "timezones": {"text"},
    "model": {"cron", "process", "units", "text", "timezones"},
    "process": set(),
    "store": {"model", "cron", "units", "text"},
    "scheduler": {"model", "cron", "units", "process", "store", "logfields"},
    "server": {"model", "cron", "units", "scheduler", "store", "process", "text", "timezones"},
    "daemon": {
        "model",
        "cron",
        "units",
        "scheduler",
        "store",
        "process",
        "server",
        "config",
        "settings",
        "logfields",
        "notify",
        "metrics",
    },
    "config": {"model", "cron", "units", "crontab", "settings", "notify"},
    "notify": {"model", "cron", "units", "store", "scheduler", "logfields"},
    "metrics": {"model", "cron", "units", "store", "scheduler"},
    "settings": {"units"},
    "crontab": {"cron", "timezones"},
    "logfields": set(),
}


def imports_of(path: Path) -> set[str]:
    """The evercron modules `path` imports (as dotted names below `evercron`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name.removeprefix("evercron.") for name in names if name.startswith("evercron.")}
        found |= {"sqlite3"} & set(names)
    return found


def layer_of(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


FILES = sorted(p for p in SOURCE.rglob("*.py") if layer_of(p) in ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_imports_run_downward(path: Path) -> None:
    layer = layer_of(path)
    for name in imports_of(path) - {"sqlite3"}:
        target = name.split(".")[0]
        assert target == layer or target in ALLOWED[layer], f"{layer} imports {name}"


def test_only_the_store_knows_sqlite_and_its_backends() -> None:
    for path in SOURCE.rglob("*.py"):
        if layer_of(path) == "store":
            continue
        names = imports_of(path)
        assert "sqlite3" not in names, path
        assert not any(n.startswith("store.sqlite") for n in names), path


def test_a_single_node_never_loads_the_postgresql_driver() -> None:
    """psycopg costs start-up time and memory: only a daemon with a database URL (or
    `migrate-store`) loads it."""
    check = (
        "import sys, evercron.cli.main, evercron.daemon.serve, evercron.store;"
        "from pathlib import Path;"
        "evercron.store.open_store(Path(sys.argv[1]));"
        "print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    )
    with tempfile.TemporaryDirectory() as state_dir:
        found = subprocess.run(
            [sys.executable, "-c", check, state_dir], capture_output=True, text=True, check=True
        )
    assert found.stdout.strip() == "[]"
