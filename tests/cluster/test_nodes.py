"""Nodes as the API and the command line show and steer them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.helpers import run_cli


def wait_for(check: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


def test_nodes_drain_status_and_readiness(start_node: Any, tmp_path: Path) -> None:
    a = start_node("a", "--node-tag", "gpu")
    b = start_node("b")
    nodes = wait_for(lambda: [n for n in a.api("GET", "/api/v1/nodes") if n["name"] == "b"] and
                     a.api("GET", "/api/v1/nodes"))  # fmt: skip
    assert [(n["name"], n["state"], n["tags"]) for n in nodes] == [
        ("a", "alive", ["gpu"]),
        ("b", "alive", []),
    ]
    env = {"EVERCRON_URL": b.url, "EVERCRON_TOKEN": b.token}
    shown = run_cli("nodes", env=env)
    assert shown.returncode == 0 and "gpu" in shown.stdout and "alive" in shown.stdout
    drained = run_cli("drain", "a", env=env)
    assert drained.returncode == 0, drained.stderr
    assert [n["state"] for n in b.api("GET", "/api/v1/nodes")] == ["draining", "alive"]
    assert run_cli("undrain", "a", env=env).returncode == 0
    missing = run_cli("drain", "nope", env=env)
    assert missing.returncode == 1 and 'no node named "nope"' in missing.stderr
    status = run_cli("status", env=env)
    assert "node b on postgresql://evercron@127.0.0.1" in status.stdout
    assert "node a: alive, tags gpu" in status.stdout
    assert b.http.get("/readyz").json() == {"status": "ready"}
    assert b.stop() == 0
    left = wait_for(lambda: [n["state"] for n in a.api("GET", "/api/v1/nodes")][1] == "left")
    assert left


def test_a_run_shows_its_node_and_fence_and_the_command_sees_them(
    start_node: Any, tmp_path: Path
) -> None:
    a = start_node("a")
    out = tmp_path / "env"
    a.add_job(name="env", schedule="@yearly",
              command=f"echo $EVERCRON_NODE $EVERCRON_FENCE $EVERCRON_RUN_ID > {out}")  # fmt: skip
    run = a.wait_for_run(a.api("POST", "/api/v1/jobs/env/trigger", 202)["id"])
    assert run["status"] == "succeeded" and run["node"] == "a" and run["fence"] >= 1
    assert out.read_text().split() == ["a", str(run["fence"]), str(run["id"])]


def test_apply_files_and_disagreements(start_node: Any, tmp_path: Path) -> None:
    a = start_node("a")
    b = start_node("b")
    first = tmp_path / "first.toml"
    first.write_text('[[job]]\nname = "nightly"\nschedule = "@daily"\ncommand = "v1"\n')
    env_a = {"EVERCRON_URL": a.url, "EVERCRON_TOKEN": a.token}
    env_b = {"EVERCRON_URL": b.url, "EVERCRON_TOKEN": b.token}
    done = run_cli("apply", str(first), env=env_a)
    assert done.returncode == 0 and done.stdout.strip() == "added: nightly", done.stderr
    assert run_cli("apply", str(first), env=env_a).stdout.startswith("nothing changed")
    other = tmp_path / "other.toml"
    other.write_text('[[job]]\nname = "nightly"\nschedule = "@daily"\ncommand = "v2"\n')
    assert run_cli("apply", str(other), env=env_b).stdout.strip() == "changed: nightly"
    job = wait_for(lambda: a.api("GET", "/api/v1/jobs/nightly")["command"] == "v2")
    assert job
    status = run_cli("status", env=env_a)
    assert "node a's files define job nightly otherwise" in status.stdout, status.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[job]]\nname = "x"\nschedule = "nope"\ncommand = "y"\n')
    refused = run_cli("apply", str(bad), env=env_a)
    assert refused.returncode == 2 and "schedule" in refused.stderr
