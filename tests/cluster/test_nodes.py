"""Nodes as the API and the command line show and steer them."""

from __future__ import annotations

import signal
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


def test_steering_through_any_node_takes_effect_on_every_node_within_a_second(
    start_node: Any, tmp_path: Path, marker: Any
) -> None:
    a = start_node("a", "--node-tag", "here")
    b = start_node("b")
    ledger = tmp_path / "ledger"
    a.add_job(name="pinned", schedule="* * * * * * *", run_on=["here"], concurrency="allow",
              command=f"echo $EVERCRON_NODE >> {ledger}")  # fmt: skip
    wait_for(lambda: ledger.exists() and ledger.read_text())
    assert set(ledger.read_text().split()) == {"a"}  # only the node with the tag
    b.api("POST", "/api/v1/jobs/pinned/pause")
    time.sleep(1.5)  # what was claimed before the pause may still start
    count = len(ledger.read_text().split())
    time.sleep(2)
    assert len(ledger.read_text().split()) == count, "a paused job fired on"
    # A command on a, followed live and killed through b.
    talk = "for i in 1 2 3 4 5 6 7 8 9; do echo line-$i; sleep 0.3; done"
    a.add_job(name="talky", schedule="@yearly", kill_grace="1s",
              command=f"{talk}; {marker.sleep()}")  # fmt: skip
    run_id = a.api("POST", "/api/v1/jobs/talky/trigger", 202)["id"]
    env = {"EVERCRON_URL": b.url, "EVERCRON_TOKEN": b.token}
    wait_for(lambda: b.http.get(f"/api/v1/runs/{run_id}/output").content.count(b"line") >= 2)
    wait_for(marker.alive)
    asked = time.monotonic()
    assert b.api("POST", f"/api/v1/runs/{run_id}/kill", 202)["status"] == "running"
    wait_for(lambda: not marker.alive(), 5)
    assert time.monotonic() - asked < 1.5
    final = b.wait_for_run(run_id)
    assert final["status"] == "killed" and final["node"] == "a"
    logs = run_cli("logs", str(run_id), env=env)
    assert "line-9" in logs.stdout
    # A run by hand through b of a job only a can run: asked of a, run there.
    by_hand = b.api("POST", "/api/v1/jobs/pinned/trigger", 202)
    assert b.wait_for_run(by_hand["id"])["node"] == "a"


def test_a_run_by_hand_through_a_node_without_the_tags_runs_on_one_with_them(
    start_node: Any, tmp_path: Path
) -> None:
    a = start_node("a")
    b = start_node("b", "--node-tag", "gpu")
    wait_for(lambda: len(a.api("GET", "/api/v1/nodes")) == 2)
    where = tmp_path / "where"
    a.add_job(name="render", schedule="@yearly", run_on=["gpu"],
              command=f"echo $EVERCRON_NODE > {where}")  # fmt: skip
    a.add_job(name="fold", schedule="@yearly", run_on=["tpu"], command="true")
    wait_for(lambda: b.http.get("/api/v1/jobs/render").status_code == 200)

    asked = a.api("POST", "/api/v1/jobs/render/trigger", 202)
    run = a.wait_for_run(asked["id"])
    assert (run["status"], run["node"], run["trigger"]) == ("succeeded", "b", "manual")
    assert where.read_text() == "b\n"

    # no live node has the tag: refused at once, recorded with the reason
    refused = a.http.post("/api/v1/jobs/fold/trigger")
    assert refused.status_code == 409
    assert (
        "lacks the tag(s) tpu; nodes that have them: none alive and taking work"
        in refused.json()["error"]
    )

    # the one node that could is stopped: nobody answers, the firing is recorded here
    b.process.send_signal(signal.SIGSTOP)
    try:
        unanswered = a.http.post("/api/v1/jobs/render/trigger")
    finally:
        b.process.send_signal(signal.SIGCONT)
    assert unanswered.status_code == 409, unanswered.text
    assert "this node (a) lacks the tag(s) gpu" in unanswered.json()["error"]
    wait_for(lambda: a.api("GET", "/api/v1/nodes")[1]["state"] == "alive")
    time.sleep(1.5)  # b's look at open requests: the withdrawn one is not answered late
    runs = a.api("GET", "/api/v1/runs?job=render")
    assert [(r["status"], r["node"]) for r in runs] == [("skipped", "a"), ("succeeded", "b")]

    b.api("POST", "/api/v1/nodes/b/drain")  # a draining node takes no work
    refused = a.http.post("/api/v1/jobs/render/trigger")
    assert "nodes that have them: none alive and taking work" in refused.json()["error"]
