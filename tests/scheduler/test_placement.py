"""Placement: who claims a firing first, who backs it up, who records it skipped, and
when this node's lease lets it claim at all."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from pathlib import Path

from evercron.model import Job, RunStatus, Trigger
from evercron.scheduler import Scheduler
from evercron.scheduler.firing import Firing
from evercron.scheduler.placement import FAILOVER_STEP, Cluster
from evercron.store import Claim, Node, NodeInfo, NodeState
from tests.scheduler.harness import opened_store

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)


def node(name: str, tags: tuple[str, ...] = (), state: NodeState = NodeState.ALIVE) -> Node:
    return Node(name, tags, state, T0, "1", 1, (), 30.0)


def view(me: str, nodes: list[Node], max_running: int | None = None) -> Cluster:
    mine = next(n for n in nodes if n.name == me)
    cluster = Cluster(NodeInfo(me, "h", "o", mine.tags, "1", 1, 30.0, max_running), lambda: 0.0)
    cluster.renewed(0.0, nodes)
    return cluster


def job(name: str = "j", **extra: object) -> Job:
    return Job.from_mapping({"name": name, "schedule": "* * * * *", "command": "x", **extra})


NODES = [node("a", ("gpu",)), node("b"), node("c", ("gpu",))]


def test_every_firing_has_one_first_node_and_the_others_back_it_up() -> None:
    clusters = [view(name, NODES) for name in "abc"]
    first = collections.Counter()
    for second in range(300):
        at = T0 + dt.timedelta(seconds=second)
        turns = sorted(c.turn(job(), at, 1, 0).delay for c in clusters)  # type: ignore[union-attr]
        assert turns == [0.0, FAILOVER_STEP, 2 * FAILOVER_STEP]
        first[next(c.me.name for c in clusters if c.turn(job(), at, 1, 0).delay == 0)] += 1  # type: ignore[union-attr]
    assert all(70 < count < 130 for count in first.values()), first  # spread over the nodes


def test_only_nodes_with_the_tags_claim_and_no_such_node_records_a_skip() -> None:
    gpu = job(run_on=["gpu"])
    assert view("b", NODES).turn(gpu, T0, 1, 0) is None
    delays = sorted(view(n, NODES).turn(gpu, T0, 1, 0).delay for n in "ac")  # type: ignore[union-attr]
    assert delays == [0.0, FAILOVER_STEP]
    nobody = job(run_on=["tpu"])
    turns = [view(n, NODES).turn(nobody, T0, 1, 0) for n in "abc"]
    assert all(t is not None and t.skip_reason and "tpu" in t.skip_reason for t in turns)
    assert sorted(t.delay for t in turns if t is not None) == [0, FAILOVER_STEP, 2 * FAILOVER_STEP]


def test_a_full_node_leaves_the_firing_and_the_last_one_records_it() -> None:
    order = sorted("abc", key=lambda n: view(n, NODES).turn(job(), T0, 1, 0).delay)  # type: ignore[union-attr]
    first, last = order[0], order[-1]
    assert view(first, NODES, max_running=2).turn(job(), T0, 1, 2) is None
    full = view(last, NODES, max_running=2).turn(job(), T0, 1, 2)
    assert full is not None and full.skip_reason is not None and "max_running" in full.skip_reason


def test_draining_expired_and_left_nodes_claim_nothing() -> None:
    nodes = [node("a"), node("b", state=NodeState.DRAINING), node("c", state=NodeState.LEFT)]
    assert view("b", nodes).turn(job(), T0, 1, 0) is None
    assert view("b", nodes).drained
    assert view("a", nodes).turn(job(), T0, 1, 0) == view("a", [node("a")]).turn(job(), T0, 1, 0)


def test_the_lease_is_healthy_until_lease_minus_a_period_after_the_last_renewal_sent() -> None:
    now = [100.0]
    cluster = Cluster(NodeInfo("a", "h", "o", (), "1", 1, 6.0), lambda: now[0])
    assert not cluster.healthy()  # never renewed
    cluster.renewed(100.0, [node("a")])
    now[0] = 103.9
    assert cluster.healthy() and round(cluster.expires_in(), 1) == 2.1
    cluster.renewed(99.0, [node("a")])  # a late answer to an older renewal changes nothing
    now[0] = 104.1
    assert not cluster.healthy()
    cluster.renewed(104.0, [node("a")])
    assert cluster.healthy()


def test_a_node_alone_is_always_healthy_and_first() -> None:
    alone = Cluster.alone("solo")
    assert alone.healthy() and alone.turn(job(), T0, 1, 10_000) is not None


def test_a_claim_answered_after_the_lease_lapsed_is_not_started(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await opened_store(tmp_path / "db")
        now = [100.0]
        cluster = Cluster(NodeInfo("a", "h", "o", (), "1", 1, 6.0), lambda: now[0])
        cluster.renewed(100.0, [node("a")])
        await store.put_job(job("late", command="true"), T0)
        scheduler = Scheduler(store, "o", cluster=cluster)
        await scheduler.load()
        (claimed,) = await store.claim([Claim("late", T0, Trigger.MANUAL)], "o")
        now[0] = 110.0  # the claim's answer came after the lease lapsed
        scheduler._path.launch_claimed(Firing("late", T0, Trigger.MANUAL), claimed)
        for _ in range(100):
            run = await store.get_run(claimed.run_id or 0)
            if run is not None and run.status is not RunStatus.RUNNING:
                break
            await asyncio.sleep(0.02)
        assert run is not None and run.status is RunStatus.SKIPPED
        assert "lease lapsed" in (run.error or "")
        assert not scheduler.launcher.running
        await store.close()

    asyncio.run(scenario())
