"""The `Store` contract: what every backend promises (evercron.store.api).

Each test runs against every backend of the `store` fixture; a new backend is done when
this file passes on it unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import zoneinfo

import pytest

from evercron.model import Job, NotifyEvent, RunStatus, Trigger
from evercron.store import (
    MERGED,
    BrokenJob,
    ChannelQuota,
    Claim,
    DeliveryState,
    EventPolicy,
    FanOut,
    JobSchedule,
    MadeDelivery,
    NodeInfo,
    NodeState,
    RunEnd,
    RunQuery,
    Store,
    StoredChunk,
    Total,
    TotalKind,
)

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def a_job(name: str = "backup", **extra: object) -> Job:
    return Job.from_mapping({"name": name, "schedule": "*/5 * * * *", "command": "true", **extra})


def at(minutes: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


async def claim_one(store: Store, claim: Claim, owner: str = "owner-a") -> int | None:
    (outcome,) = await store.claim([claim], owner)
    return outcome.run_id


async def ended(store: Store, status: RunStatus, job: str = "backup", exit_code: int = 0) -> int:
    """A manual run of `job`, started and ended with `status`."""
    run_id = await claim_one(store, Claim(job, NOW, Trigger.MANUAL))
    assert run_id is not None
    await store.mark_started(run_id, 100, 200, NOW)
    assert await store.finish(run_id, RunEnd(status, at(1), exit_code=exit_code))
    return run_id


async def events(store: Store) -> list[tuple[str, str, bool]]:
    return [(e.kind.value, e.job, e.repeat) for e in await store.undispatched_events(1000)]


def every(*kinds: NotifyEvent, node: str | None = None, repeats: bool = True) -> EventPolicy:
    return EventPolicy(frozenset(kinds or NotifyEvent), node, repeats)


class TestJobs:
    async def test_put_get_list_delete(self, store: Store) -> None:
        assert await store.put_job(a_job(timeout="90s", env={"A": "1"}), NOW) is True
        assert await store.put_job(a_job(timeout="2m"), NOW + dt.timedelta(seconds=1)) is False
        stored = await store.get_job("backup")
        assert stored is not None
        assert stored.job.timeout == 120 and stored.job.env == {}
        assert stored.created_at == NOW and stored.updated_at > NOW
        await store.put_job(a_job("another"), NOW)
        assert [s.job.name for s in await store.list_jobs()] == ["another", "backup"]
        assert await store.delete_job("backup") is True
        assert await store.delete_job("backup") is False
        assert await store.get_job("backup") is None

    async def test_create_refuses_a_taken_name(self, store: Store) -> None:
        assert await store.create_job(a_job(description="first"), NOW) is True
        assert await store.create_job(a_job(description="second"), NOW) is False
        stored = await store.get_job("backup")
        assert stored is not None and stored.job.description == "first"

    async def test_concurrent_creations_of_one_name_make_one_job(self, store: Store) -> None:
        jobs = [a_job(description=str(n)) for n in range(10)]
        created = await asyncio.gather(*(store.create_job(job, NOW) for job in jobs))
        assert sorted(created) == [False] * 9 + [True]

    async def test_an_update_holds_only_while_nothing_changed_meanwhile(self, store: Store) -> None:
        await store.create_job(a_job(), NOW)
        read = await store.get_job("backup")
        assert read is not None
        later = NOW + dt.timedelta(seconds=1)
        assert await store.update_job(a_job(description="a"), later, read.updated_at)
        # a second writer that read the same version loses: its merge is stale
        assert not await store.update_job(a_job(description="b"), later, read.updated_at)
        again = await store.get_job("backup")
        assert again is not None and again.job.description == "a"
        assert again.updated_at == later and again.created_at == NOW
        await store.delete_job("backup")
        # a deleted job is not brought back by an update
        assert not await store.update_job(a_job(description="c"), later, again.updated_at)
        assert await store.get_job("backup") is None

    async def test_pause_survives_an_update(self, store: Store) -> None:
        await store.put_job(a_job(), NOW)
        assert await store.set_paused("backup", True)
        await store.put_job(a_job(description="changed"), NOW)
        stored = await store.get_job("backup")
        assert stored is not None and stored.paused and stored.job.description == "changed"
        assert await store.set_paused("missing", True) is False

    async def test_reconcile_makes_file_jobs_exactly_the_given_ones(self, store: Store) -> None:
        from_file = a_job("nightly", description="old").to_mapping()
        await store.put_job(Job.from_mapping(from_file, source="/etc/evercron.toml"), NOW)
        await store.put_job(Job.from_mapping(a_job("gone").to_mapping(), source="crontab"), NOW)
        await store.put_job(a_job("made-by-api"), NOW)
        wanted = [
            Job.from_mapping({**from_file, "description": "new"}, source="/etc/evercron.toml"),
            Job.from_mapping(a_job("fresh").to_mapping(), source="crontab"),
        ]
        changed = await store.reconcile_jobs(wanted, NOW)
        assert sorted(changed) == ["fresh", "gone", "nightly"]
        names = [s.job.name for s in await store.list_jobs()]
        assert names == ["fresh", "made-by-api", "nightly"]
        assert await store.reconcile_jobs(wanted, NOW) == []  # idempotent


class TestClaims:
    async def test_a_firing_is_claimed_once(self, store: Store) -> None:
        first = await claim_one(store, Claim("backup", NOW, Trigger.SCHEDULE))
        assert first is not None
        assert await claim_one(store, Claim("backup", NOW, Trigger.SCHEDULE), "owner-b") is None
        retry = Claim("backup", NOW, Trigger.RETRY, attempt=2, retry_of=first)
        assert await claim_one(store, retry, "owner-b") is not None
        assert await claim_one(store, Claim("other", NOW, Trigger.SCHEDULE), "owner-b") is not None

    async def test_many_firings_are_claimed_in_one_call(self, store: Store) -> None:
        taken = await claim_one(store, Claim("b", NOW, Trigger.SCHEDULE))
        claims = [
            Claim(job, when, Trigger.SCHEDULE)
            for job, when in [("a", at(0)), ("b", at(0)), ("c", at(0)), ("a", at(1))]
        ]
        outcomes = await store.claim(claims, "owner-b")
        ids = [outcome.run_id for outcome in outcomes]
        assert ids[1] is None  # claimed already: the same rule as one claim at a time
        assert None not in (ids[0], ids[2], ids[3]) and len({ids[0], ids[2], ids[3]}) == 3
        assert [o.run_id for o in await store.claim(claims, "owner-c")] == [None] * 4
        for claim, run_id in zip(claims, ids, strict=True):
            if run_id is None:
                continue
            run = await store.get_run(run_id)
            assert run is not None and run.id != taken
            assert (run.job, run.scheduled_at, run.trigger) == (
                claim.job,
                claim.scheduled_at,
                Trigger.SCHEDULE,
            )
            assert (run.status, run.attempt, run.owner) == (RunStatus.RUNNING, 1, "owner-b")

    async def test_manual_runs_never_collide(self, store: Store) -> None:
        ids = {await claim_one(store, Claim("backup", NOW, Trigger.MANUAL)) for _ in range(3)}
        assert None not in ids and len(ids) == 3

    async def test_run_ids_are_never_reused(self, store: Store) -> None:
        first = await claim_one(store, Claim("backup", NOW, Trigger.SCHEDULE))
        assert first is not None
        await store.finish(first, RunEnd(RunStatus.SUCCEEDED, NOW))
        await store.prune(0, NOW + dt.timedelta(days=1))
        assert await store.get_run(first) is None
        second = await claim_one(store, Claim("backup", at(5), Trigger.SCHEDULE))
        assert second is not None and second > first

    async def test_a_skipped_claim_is_a_finished_row(self, store: Store) -> None:
        claim = Claim("backup", NOW, Trigger.SCHEDULE, skip_reason="missed: the daemon was down")
        (outcome,) = await store.claim([claim], "a")
        assert outcome.run_id is not None and outcome.status is RunStatus.SKIPPED
        assert not outcome.owned
        run = await store.get_run(outcome.run_id)
        assert run is not None and run.status is RunStatus.SKIPPED
        assert run.finished_at is not None and run.error == "missed: the daemon was down"
        assert await claim_one(store, Claim("backup", NOW, Trigger.SCHEDULE)) is None


class TestTriggerRequests:
    async def test_a_request_is_answered_by_one_claim_only(self, store: Store) -> None:
        request = await store.request_trigger("backup", NOW)
        (waiting,) = await store.open_trigger_requests(NOW - dt.timedelta(minutes=1))
        assert (waiting.id, waiting.job, waiting.requested_at, waiting.run_id) == (
            request, "backup", NOW, None,
        )  # fmt: skip
        claim = Claim("backup", NOW, Trigger.MANUAL, request=request, token="t1")
        other = Claim("backup", NOW, Trigger.MANUAL, request=request, token="t2")
        first, second = await asyncio.gather(
            store.claim([claim], "owner-a"), store.claim([other], "owner-b")
        )
        answers = [outcome.run_id for outcome in (*first, *second)]
        assert answers.count(None) == 1  # of two nodes answering at once, one does
        (run_id,) = [answer for answer in answers if answer is not None]
        answered = await store.trigger_request(request)
        assert answered is not None and answered.run_id == run_id
        assert await store.open_trigger_requests(NOW - dt.timedelta(minutes=1)) == []
        # the same claim again (its answer was lost on the way back) finds its run
        (again,) = await store.claim([claim if first[0].run_id else other], "owner-a")
        assert again.run_id in (run_id, None)
        assert await store.withdraw_trigger_request(request) is False  # it had its run
        assert await store.trigger_request(request) is None

    async def test_a_withdrawn_request_is_answered_by_nobody(self, store: Store) -> None:
        request = await store.request_trigger("backup", NOW)
        assert await store.withdraw_trigger_request(request) is True
        claim = Claim("backup", NOW, Trigger.MANUAL, request=request)
        assert [o.run_id for o in await store.claim([claim], "owner-a")] == [None]
        assert await store.list_runs(RunQuery()) == []
        late = await store.request_trigger("backup", NOW - dt.timedelta(hours=1))
        assert [
            r.id for r in await store.open_trigger_requests(NOW - dt.timedelta(minutes=1))
        ] == []
        assert await store.trigger_request(late) is not None
        recent = await store.request_trigger("backup", NOW)
        await store.prune(100, NOW - dt.timedelta(minutes=1))  # (a request left behind)
        assert await store.trigger_request(late) is None
        assert await store.trigger_request(recent) is not None


class TestFences:
    async def test_each_claim_gets_a_greater_fence_and_the_node(self, store: Store) -> None:
        outcomes = await store.claim(
            [Claim("a", at(0), Trigger.SCHEDULE), Claim("b", at(0), Trigger.SCHEDULE)], "o"
        )
        (later,) = await store.claim([Claim("a", at(1), Trigger.MANUAL)], "o")
        fences = [o.fence for o in [*outcomes, later]]
        assert None not in fences and fences == sorted(set(fences))  # type: ignore[type-var]
        for outcome in [*outcomes, later]:
            assert outcome.run_id is not None
            run = await store.get_run(outcome.run_id)
            assert run is not None and (run.fence, run.node) == (outcome.fence, "node-a")

    async def test_a_result_with_another_fence_is_refused(self, store: Store) -> None:
        (claimed,) = await store.claim([Claim("a", NOW, Trigger.SCHEDULE)], "o")
        assert claimed.run_id is not None and claimed.fence is not None
        stale = claimed.fence - 1
        assert not await store.finish(claimed.run_id, RunEnd(RunStatus.SUCCEEDED, NOW), stale)
        end = RunEnd(RunStatus.SUCCEEDED, NOW)
        assert await store.finish(claimed.run_id, end, claimed.fence)
        run = await store.get_run(claimed.run_id)
        assert run is not None and run.status is RunStatus.SUCCEEDED


class TestManyAtOnce:
    async def test_concurrent_starts_results_and_output_each_get_their_answer(
        self, store: Store
    ) -> None:
        claims = [Claim("j", at(n), Trigger.SCHEDULE) for n in range(40)]
        claimed = await store.claim(claims, "o")
        ids = [c.run_id for c in claimed]
        fences = [c.fence for c in claimed]
        assert None not in ids and None not in fences
        await asyncio.gather(
            *(store.mark_started(i, 100 + n, n, at(n)) for n, i in enumerate(ids) if i),
            *(store.append_output(i, [StoredChunk(0, "stdout", 1.0, b"x")]) for i in ids if i),
        )
        ends = [
            store.finish(i, RunEnd(RunStatus.SUCCEEDED, at(n + 1)), f if n % 2 else (f or 0) - 1)
            for n, (i, f) in enumerate(zip(ids, fences, strict=True))
            if i is not None
        ]
        assert await asyncio.gather(*ends) == [n % 2 == 1 for n in range(40)]
        for n, run_id in enumerate(ids):
            assert run_id is not None
            run = await store.get_run(run_id)
            assert run is not None and run.pid == 100 + n
            assert run.status is (RunStatus.SUCCEEDED if n % 2 else RunStatus.RUNNING)
            assert [c.data for c in await store.read_output(run_id)] == [b"x"]


class TestForbidAndReplace:
    async def test_an_exclusive_claim_is_skipped_while_the_job_runs(self, store: Store) -> None:
        first = await claim_one(store, Claim("j", at(0), Trigger.SCHEDULE, exclusive=True))
        assert first is not None
        (second,) = await store.claim([Claim("j", at(1), Trigger.SCHEDULE, exclusive=True)], "b")
        assert second.run_id is not None and second.status is RunStatus.SKIPPED
        assert f"run {first} is still running" in (second.error or "")
        manual = await store.claim([Claim("j", at(1), Trigger.MANUAL, exclusive=True)], "b")
        assert manual[0].status is RunStatus.SKIPPED  # every path, by hand too
        await store.finish(first, RunEnd(RunStatus.SUCCEEDED, at(1)))
        third = await store.claim([Claim("j", at(2), Trigger.SCHEDULE, exclusive=True)], "b")
        assert third[0].owned

    async def test_exclusive_claims_in_one_call_let_one_run(self, store: Store) -> None:
        claims = [Claim("j", at(n), Trigger.CATCH_UP, exclusive=True) for n in range(5)]
        outcomes = await store.claim(claims, "a")
        assert [o.status for o in outcomes].count(RunStatus.RUNNING) == 1

    async def test_a_non_exclusive_run_also_blocks_a_forbid_claim(self, store: Store) -> None:
        await claim_one(store, Claim("j", at(0), Trigger.MANUAL))  # claimed while "allow"
        (blocked,) = await store.claim([Claim("j", at(1), Trigger.SCHEDULE, exclusive=True)], "a")
        assert blocked.status is RunStatus.SKIPPED

    async def test_replace_asks_the_running_runs_to_end(self, store: Store) -> None:
        old = await claim_one(store, Claim("j", at(0), Trigger.SCHEDULE), "owner-a")
        (new,) = await store.claim([Claim("j", at(1), Trigger.SCHEDULE, replace=True)], "owner-b")
        assert new.owned and new.replaced == (old,)
        assert await store.kill_requests("owner-a") == [old]
        assert await store.kill_requests("owner-b") == []


class TestRuns:
    async def test_lifecycle(self, store: Store) -> None:
        run_id = await claim_one(store, Claim("backup", NOW, Trigger.SCHEDULE))
        assert run_id is not None
        await store.mark_started(run_id, 4242, 123, NOW)
        running = await store.running("owner-a")
        assert [(r.run.id, r.pid_start_ticks) for r in running] == [(run_id, 123)]
        end = RunEnd(
            RunStatus.FAILED,
            at(3),
            exit_code=2,
            cpu_user=0.5,
            cpu_system=0.25,
            max_rss_kb=1000,
            output_bytes=10,
            output_truncated=True,
            error="boom",
        )
        assert await store.finish(run_id, end) is True
        run = await store.get_run(run_id)
        assert run is not None
        assert (run.status, run.exit_code, run.pid, run.error) == (
            RunStatus.FAILED,
            2,
            4242,
            "boom",
        )
        assert run.output_truncated and run.output_bytes == 10
        assert run.finished_at == at(3) and run.started_at == NOW
        assert await store.running() == []

    async def test_the_cgroups_of_a_run_are_kept_for_recovery(self, store: Store) -> None:
        plain = await claim_one(store, Claim("backup", NOW, Trigger.MANUAL))
        grouped = await claim_one(store, Claim("backup", NOW, Trigger.MANUAL))
        assert plain is not None and grouped is not None
        await store.mark_started(plain, 10, 1, NOW)
        groups = ("/sys/fs/cgroup/unified/evercron-runs/7-8-9", "/sys/fs/cgroup/pids/x y/7-8-9")
        await store.mark_started(grouped, 11, 2, NOW, groups)
        running = {r.run.id: r.cgroups for r in await store.running()}
        assert running == {plain: (), grouped: groups}

    async def test_a_finished_run_is_not_finished_again(self, store: Store) -> None:
        run_id = await claim_one(store, Claim("backup", NOW, Trigger.SCHEDULE))
        assert run_id is not None
        assert await store.finish(run_id, RunEnd(RunStatus.LOST, at(1), error="owner died"))
        assert not await store.finish(run_id, RunEnd(RunStatus.SUCCEEDED, at(2)))
        run = await store.get_run(run_id)
        assert run is not None and run.status is RunStatus.LOST

    async def test_list_filters_newest_first_and_pages(self, store: Store) -> None:
        for minute in range(5):
            run_id = await claim_one(
                store, Claim("a" if minute % 2 else "b", at(minute), Trigger.SCHEDULE)
            )
            assert run_id is not None
            if minute < 3:
                await store.finish(run_id, RunEnd(RunStatus.SUCCEEDED, NOW))
        everything = await store.list_runs(RunQuery())
        assert [r.job for r in everything] == ["b", "a", "b", "a", "b"]
        assert len(await store.list_runs(RunQuery(job="a"))) == 2
        assert len(await store.list_runs(RunQuery(status=RunStatus.RUNNING))) == 2
        page = await store.list_runs(RunQuery(limit=2))
        rest = await store.list_runs(RunQuery(before=page[-1].id))
        assert [r.id for r in page + rest] == [r.id for r in everything]

    async def test_list_by_scheduled_time_and_by_original(self, store: Store) -> None:
        ids = [await claim_one(store, Claim("a", at(m), Trigger.SCHEDULE)) for m in range(6)]
        retry = await claim_one(store, Claim("a", NOW, Trigger.RETRY, attempt=2, retry_of=ids[0]))
        window = await store.list_runs(RunQuery(since=at(2), until=at(4)))
        assert [r.id for r in window] == [ids[3], ids[2]]  # since inclusive, until exclusive
        berlin = at(2).astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
        assert [r.id for r in await store.list_runs(RunQuery(since=berlin, until=at(4)))] == [
            ids[3],
            ids[2],
        ]
        assert [r.id for r in await store.list_runs(RunQuery(retry_of=ids[0]))] == [retry]

    async def test_latest_runs_of_every_job_and_job_counts(self, store: Store) -> None:
        for name in ("a", "b", "idle"):
            await store.put_job(a_job(name), NOW)
        claimed = {
            name: [await claim_one(store, Claim(name, at(m), Trigger.SCHEDULE)) for m in range(4)]
            for name in ("a", "b", "gone")  # "gone" has runs but no job any more
        }
        last = claimed["a"][-1]
        assert last is not None
        start = at(3) + dt.timedelta(seconds=1)
        await store.mark_started(last, 1, 1, start)
        end = RunEnd(RunStatus.FAILED, start + dt.timedelta(seconds=2.5), exit_code=1)
        await store.finish(last, end)
        latest = await store.latest_runs(3)
        assert list(latest) == ["a", "b", "idle"]
        assert [r.id for r in latest["a"]] == claimed["a"][:0:-1]
        assert [r.id for r in latest["b"]] == claimed["b"][:0:-1]
        assert latest["idle"] == []
        newest = latest["a"][0]
        assert (newest.status, newest.duration, newest.scheduled_at) == (
            RunStatus.FAILED,
            2.5,
            at(3),
        )
        assert latest["a"][1].duration is None  # not ended
        assert await store.job_counts() == (3, 0)
        await store.set_paused("b", True)
        assert await store.job_counts() == (3, 1)

    async def test_last_scheduled_ignores_manual_runs_and_counts_skipped(
        self, store: Store
    ) -> None:
        assert await store.last_scheduled("backup") is None
        await claim_one(store, Claim("backup", NOW, Trigger.SCHEDULE))
        await claim_one(store, Claim("backup", at(60), Trigger.MANUAL))
        assert await store.last_scheduled("backup") == NOW
        await claim_one(store, Claim("backup", at(5), Trigger.SCHEDULE, skip_reason="missed"))
        assert await store.last_scheduled("backup") == at(5)

    async def test_kill_requests_reach_the_owner_only_while_running(self, store: Store) -> None:
        run_id = await claim_one(store, Claim("job", NOW, Trigger.SCHEDULE))
        assert run_id is not None
        assert await store.request_kill(run_id, NOW)
        assert await store.kill_requests("owner-a") == [run_id]
        await store.finish(run_id, RunEnd(RunStatus.KILLED, NOW))
        assert await store.kill_requests("owner-a") == []
        assert not await store.request_kill(run_id, NOW)

    async def test_boot_time_is_the_first_one_recorded(self, store: Store) -> None:
        assert await store.boot_time("boot-1", NOW) == NOW
        assert await store.boot_time("boot-1", at(3)) == NOW
        assert await store.boot_time("boot-2", at(3)) == at(3)


class TestOutput:
    async def test_in_order_and_resumable(self, store: Store) -> None:
        await store.append_output(
            7, [StoredChunk(0, "stdout", 1.0, b"ab"), StoredChunk(2, "stderr", 1.5, b"c")]
        )
        await store.append_output(
            7,
            [StoredChunk(2, "stderr", 1.5, b"c"), StoredChunk(3, "stdout", 2.0, b"\xff\x00")],
        )
        assert [c.data for c in await store.read_output(7)] == [b"ab", b"c", b"\xff\x00"]
        assert [c.offset for c in await store.read_output(7, after=0)] == [2, 3]
        assert [c.stream for c in await store.read_output(7)] == ["stdout", "stderr", "stdout"]

    async def test_the_tail_starts_at_the_chunk_holding_its_first_byte(self, store: Store) -> None:
        assert await store.tail_start(8, 10) == 0  # no output
        # 0-9 kept, 10-99 dropped (max_output), 100-119 kept.
        await store.append_output(
            8,
            [
                StoredChunk(0, "stdout", 1.0, b"a" * 10),
                StoredChunk(100, "stdout", 2.0, b"b" * 10),
                StoredChunk(110, "stderr", 2.0, b"c" * 10),
            ],
        )
        starts = [await store.tail_start(8, n) for n in (1, 10, 11, 20, 21, 119, 120, 500)]
        assert starts == [110, 110, 100, 100, 0, 0, 0, 0]

    async def test_prune_keeps_recent_and_running(self, store: Store) -> None:
        ids = []
        for minute in range(6):
            run_id = await claim_one(store, Claim("a", at(minute), Trigger.SCHEDULE))
            assert run_id is not None
            ids.append(run_id)
            if minute != 0:
                await store.finish(run_id, RunEnd(RunStatus.SUCCEEDED, NOW))
            await store.append_output(run_id, [StoredChunk(0, "stdout", 1.0, b"x")])
        assert await store.prune(2, NOW + dt.timedelta(days=1)) == 3
        assert sorted(r.id for r in await store.list_runs(RunQuery())) == [ids[0], ids[4], ids[5]]
        assert await store.read_output(ids[1]) == []


async def test_migrate_is_idempotent(store: Store) -> None:
    assert await store.migrate() == await store.migrate()


async def test_broken_jobs_are_listed_apart(store: Store) -> None:
    await store.put_job(a_job("fine"), NOW)
    assert await store.broken_jobs() == []
    assert all(not isinstance(job, BrokenJob) for job in await store.list_jobs())


class TestNodes:
    """The node calls; a store only one node uses keeps them trivially."""

    def info(self, **extra: object) -> NodeInfo:
        fields: dict[str, object] = {
            "name": "node-a",
            "home": "host-1:/var/lib/evercron",
            "owner": "owner-a",
            "tags": ("gpu", "eu"),
            "version": "1.2.3",
            "pid": 4242,
            "lease": 30.0,
            "max_running": 5,
        }
        return NodeInfo(**{**fields, **extra})  # type: ignore[arg-type]

    async def test_a_joined_node_is_alive_with_what_it_said(self, store: Store) -> None:
        await store.join(self.info())
        run_id = await claim_one(store, Claim("job", NOW, Trigger.SCHEDULE), "owner-a")
        renewed = await store.renew(self.info())
        assert renewed is not None
        (node,) = [n for n in renewed if n.name == "node-a"]
        assert (node.state, node.tags, node.version, node.pid) == (
            NodeState.ALIVE,
            ("gpu", "eu"),
            "1.2.3",
            4242,
        )
        assert node.running == (run_id,) and node.lease == 30.0 and node.max_running == 5
        assert [n.name for n in await store.nodes()] == [n.name for n in renewed]

    async def test_drain_and_undrain(self, store: Store) -> None:
        await store.join(self.info())
        assert await store.set_drained("node-a", True)
        assert [n.state for n in await store.nodes()] == [NodeState.DRAINING]
        assert await store.set_drained("node-a", False)
        assert [n.state for n in await store.nodes()] == [NodeState.ALIVE]
        assert not await store.set_drained("no-such-node", True)

    async def test_running_runs_of_one_node(self, store: Store) -> None:
        run_id = await claim_one(store, Claim("job", NOW, Trigger.SCHEDULE), "owner-a")
        assert [r.run.id for r in await store.running(node="node-a")] == [run_id]

    async def test_a_live_node_is_never_reaped(self, store: Store) -> None:
        await store.join(self.info())
        await claim_one(store, Claim("job", NOW, Trigger.SCHEDULE), "owner-a")
        assert await store.reap(0.0, {"job": 3}, "owner-b") == []

    async def test_listening_starts_with_a_resync(self, store: Store) -> None:
        heard: list[tuple[str, str]] = []
        listening = asyncio.ensure_future(store.listen(lambda *hint: heard.append(hint)))
        try:
            for _ in range(200):
                if heard:
                    break
                await asyncio.sleep(0.01)
            assert heard[0] == ("resync", "")
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def test_one_node_s_files_agree_with_themselves(self, store: Store) -> None:
        await store.join(self.info())
        await store.reconcile_jobs([a_job("nightly")], NOW)
        assert await store.disagreements() == []


async def test_job_schedules_and_recent_status_counts(store: Store) -> None:
    await store.put_job(a_job("b", schedule="@daily", timezone="Europe/Berlin"), NOW)
    await store.put_job(a_job("a"), NOW)
    await store.set_paused("a", True)
    assert await store.job_schedules() == [
        JobSchedule("a", "*/5 * * * *", None, True),
        JobSchedule("b", "@daily", "Europe/Berlin", False),
    ]
    for status in (RunStatus.FAILED, RunStatus.SUCCEEDED, RunStatus.FAILED):
        await ended(store, status)
    await claim_one(store, Claim("a", NOW, Trigger.MANUAL))
    assert await store.recent_status_counts(1000) == {
        RunStatus.FAILED: 2,
        RunStatus.SUCCEEDED: 1,
        RunStatus.RUNNING: 1,
    }
    assert await store.recent_status_counts(2) == {
        RunStatus.FAILED: 1,
        RunStatus.RUNNING: 1,
    }


class TestEvents:
    async def test_nothing_is_written_until_events_are_wanted(self, store: Store) -> None:
        await ended(store, RunStatus.FAILED)
        await store.claim([Claim("backup", NOW, Trigger.SCHEDULE, skip_reason="missed")], "o")
        assert await events(store) == []

    async def test_ten_failures_are_one_change_then_recovered(self, store: Store) -> None:
        await store.want_events(every(NotifyEvent.FAILED, NotifyEvent.RECOVERED, node="n1"))
        await ended(store, RunStatus.SUCCEEDED)  # not wanted: no event
        for _ in range(10):
            await ended(store, RunStatus.FAILED, exit_code=1)
        await ended(store, RunStatus.SUCCEEDED, job="other")  # another job's state is its own
        last = await ended(store, RunStatus.SUCCEEDED)
        assert await events(store) == [("failed", "backup", False)] + [
            ("failed", "backup", True)
        ] * 9 + [("recovered", "backup", False)]
        recovered = (await store.undispatched_events(1000))[-1]
        assert (recovered.run.id, recovered.node, recovered.created_at) == (last, "n1", at(1))
        assert (recovered.run.status, recovered.run.exit_code) == (RunStatus.SUCCEEDED, 0)
        assert (recovered.run.started_at, recovered.run.finished_at) == (NOW, at(1))
        assert (recovered.run.trigger, recovered.run.attempt) == (Trigger.MANUAL, 1)
        # With no channel sending every run, repeats are not even written.
        await store.want_events(every(NotifyEvent.FAILED, repeats=False))
        for _ in range(3):
            await ended(store, RunStatus.FAILED, job="quiet")
        quiet = [e.repeat for e in await store.undispatched_events(1000) if e.job == "quiet"]
        assert quiet == [False]

    async def test_timeouts_and_kills_are_failures(self, store: Store) -> None:
        await store.want_events(
            every(NotifyEvent.FAILED, NotifyEvent.SUCCEEDED, NotifyEvent.RECOVERED)
        )
        await ended(store, RunStatus.TIMED_OUT)
        await ended(store, RunStatus.KILLED)
        await ended(store, RunStatus.SUCCEEDED)
        assert await events(store) == [
            ("failed", "backup", False),
            ("failed", "backup", True),
            ("succeeded", "backup", False),
            ("recovered", "backup", False),
        ]

    async def test_skips_lost_runs_starts_and_overdue(self, store: Store) -> None:
        await store.want_events(every())
        missed = Claim("backup", NOW, Trigger.SCHEDULE, skip_reason="missed: late")
        skipped = await claim_one(store, missed)
        running = await claim_one(store, Claim("backup", NOW, Trigger.MANUAL))
        assert skipped is not None and running is not None
        assert await claim_one(store, missed) is None  # not claimed: no event
        await store.mark_started(running, 1, 2, NOW)
        await store.mark_started(running, 1, 2, NOW)  # a second start record: one event
        assert await store.add_overdue_event(running)
        assert not await store.add_overdue_event(running)  # once per run
        assert await store.finish(running, RunEnd(RunStatus.LOST, at(1)))
        assert not await store.finish(running, RunEnd(RunStatus.FAILED, at(2)))  # no event
        assert not await store.add_overdue_event(running)  # not running any more
        assert await events(store) == [
            ("missed", "backup", False),
            ("started", "backup", False),
            ("overdue", "backup", False),
            ("lost", "backup", False),
        ]
        first = (await store.undispatched_events())[0]
        assert first.run.status is RunStatus.SKIPPED and first.run.error == "missed: late"

    async def test_overdue_only_when_wanted(self, store: Store) -> None:
        await store.want_events(every(NotifyEvent.FAILED))
        running = await claim_one(store, Claim("backup", NOW, Trigger.MANUAL))
        assert running is not None
        assert not await store.add_overdue_event(running)
        assert await events(store) == []


class TestDeliveries:
    async def failed_event(self, store: Store) -> int:
        await store.want_events(every(NotifyEvent.FAILED))
        await ended(store, RunStatus.FAILED, exit_code=1)
        return (await store.undispatched_events())[-1].id

    async def test_fan_out_is_once_per_event_and_channel(self, store: Store) -> None:
        event = await self.failed_event(store)
        fan_out = FanOut(event, (ChannelQuota("a", 30), ChannelQuota("b", 30)))
        assert await store.dispatch_events([fan_out], NOW) == [
            MadeDelivery(event, "a", DeliveryState.PENDING),
            MadeDelivery(event, "b", DeliveryState.PENDING),
        ]
        assert await store.dispatch_events([fan_out], NOW) == []  # another process
        assert await store.undispatched_events() == []
        found = await store.list_deliveries()
        assert sorted(d.channel for d in found) == ["a", "b"]
        assert all(d.state is DeliveryState.PENDING and d.event.id == event for d in found)
        assert all(d.attempts == 0 and d.created_at == NOW for d in found)
        assert [d.channel for d in await store.list_deliveries(channel="a")] == ["a"]

    async def test_an_event_no_channel_wants_is_only_marked(self, store: Store) -> None:
        event = await self.failed_event(store)
        assert await store.dispatch_events([FanOut(event, ())], NOW) == []
        assert await store.undispatched_events() == []
        assert await store.list_deliveries() == []

    async def test_beyond_the_hourly_limit_one_summary_then_silence(self, store: Store) -> None:
        await store.want_events(every(NotifyEvent.FAILED))
        ops = (ChannelQuota("ops", 3),)
        for minute in range(6):
            await ended(store, RunStatus.FAILED)
            event = (await store.undispatched_events())[-1].id
            await store.dispatch_events([FanOut(event, ops)], at(minute))
        await ended(store, RunStatus.FAILED)
        event = (await store.undispatched_events())[-1].id
        await store.dispatch_events([FanOut(event, ops)], NOW.replace(hour=13))
        found = [(d.summary, d.state.value) for d in reversed(await store.list_deliveries())]
        assert found == [
            (False, "pending"),
            (False, "pending"),
            (False, "pending"),
            (True, "pending"),
            (False, "suppressed"),
            (False, "suppressed"),
            (False, "pending"),  # the next hour
        ]
        suppressed = await store.list_deliveries(state=DeliveryState.SUPPRESSED)
        assert len(suppressed) == 2
        assert await store.claim_deliveries("p", lease=60, limit=10) != []  # (not those)
        assert all(
            d.state is DeliveryState.SUPPRESSED
            for d in await store.list_deliveries(state=DeliveryState.SUPPRESSED)
        )

    async def test_a_claim_is_held_until_settled_or_expired(self, store: Store) -> None:
        event = await self.failed_event(store)
        await store.dispatch_events([FanOut(event, (ChannelQuota("a", 30),))], NOW)
        (first,) = await store.claim_deliveries("p1", lease=3600)
        assert first.event.id == event and first.event.run.exit_code == 1
        assert await store.claim_deliveries("p2", lease=3600) == []  # p1 holds it
        assert not await store.settle_delivery(first.id, "p2", DeliveryState.SENT)
        # A lease that is over at once: p1 "died" while sending and p2 takes it.
        assert await store.settle_delivery(
            first.id, "p1", DeliveryState.PENDING, error="HTTP 500", retry_in=0
        )
        (again,) = await store.claim_deliveries("p1", lease=0)
        (taken,) = await store.claim_deliveries("p2", lease=3600)
        assert again.id == taken.id == first.id
        assert not await store.settle_delivery(first.id, "p1", DeliveryState.SENT)  # lost it
        assert await store.settle_delivery(
            first.id, "p2", DeliveryState.PENDING, error="HTTP 502", retry_in=3600
        )
        assert await store.claim_deliveries("p3", lease=60) == []  # not due for an hour
        (pending,) = await store.list_deliveries()
        assert (pending.attempts, pending.last_error, pending.sent_at) == (2, "HTTP 502", None)
        assert pending.next_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)

    async def test_a_sent_delivery_is_done(self, store: Store) -> None:
        event = await self.failed_event(store)
        await store.dispatch_events([FanOut(event, (ChannelQuota("a", 30),))], NOW)
        (claimed,) = await store.claim_deliveries("p", lease=0)
        before = dt.datetime.now(dt.UTC)
        assert await store.settle_delivery(claimed.id, "p", DeliveryState.SENT, outcome="HTTP 200")
        assert not await store.settle_delivery(claimed.id, "p", DeliveryState.FAILED)
        (done,) = await store.list_deliveries()
        assert (done.state, done.attempts, done.outcome) == (DeliveryState.SENT, 1, "HTTP 200")
        assert done.sent_at is not None and done.sent_at >= before - dt.timedelta(seconds=1)
        assert await store.claim_deliveries("p", lease=0) == []

    async def test_the_oldest_due_go_first_up_to_the_limit(self, store: Store) -> None:
        await store.want_events(every(NotifyEvent.FAILED))
        for _ in range(5):
            await ended(store, RunStatus.FAILED)
        fan_outs = [
            FanOut(e.id, (ChannelQuota("a", 100),)) for e in await store.undispatched_events()
        ]
        await store.dispatch_events(fan_outs, NOW)
        first = await store.claim_deliveries("p", lease=3600, limit=2)
        rest = await store.claim_deliveries("q", lease=3600, limit=10)
        assert len(first) == 2 and len(rest) == 3
        assert [d.id for d in first + rest] == sorted(d.id for d in first + rest)

    async def test_pruning_keeps_what_is_still_to_send(self, store: Store) -> None:
        await store.want_events(every(NotifyEvent.FAILED))
        for _ in range(2):
            await ended(store, RunStatus.FAILED)
        first, second = (e.id for e in await store.undispatched_events())
        channel = (ChannelQuota("a", 30),)
        await store.dispatch_events([FanOut(first, channel), FanOut(second, channel)], NOW)
        (claimed,) = await store.claim_deliveries("p", lease=60, limit=1)
        assert await store.settle_delivery(claimed.id, "p", DeliveryState.SENT)
        assert await store.prune_notifications(NOW) == 0  # made at NOW: not older
        assert await store.prune_notifications(at(1)) == 1
        (left,) = await store.list_deliveries()
        assert left.state is DeliveryState.PENDING and left.event.id == second


class TestMetricTotals:
    async def test_totals_of_other_processes_and_merging_the_gone(self, store: Store) -> None:
        runs, last = TotalKind.SUM, TotalKind.MAX
        await store.save_metric_totals("n", "old", {"runs": Total(runs, 5), "t": Total(last, 100)})
        await store.save_metric_totals("n", "new", {"runs": Total(runs, 2), "t": Total(last, 50)})
        await store.save_metric_totals("n", "old", {"runs": Total(runs, 7)})  # absolute values
        assert await store.metric_totals("n", exclude={"new"}) == {"runs": 7, "t": 100}
        assert await store.metric_totals("n") == {"runs": 9, "t": 100}
        assert await store.compact_metric_totals("n", keep={"new"}) == 1
        assert await store.compact_metric_totals("n", keep={"new"}) == 0
        assert await store.metric_totals("n") == {"runs": 9, "t": 100}  # the same after
        assert await store.merged_metric_totals("n") == {"runs": 7, "t": 100}
        assert await store.metric_totals("n", exclude={MERGED}) == {"runs": 2, "t": 50}
        await store.save_metric_totals(
            "n", "newer", {"runs": Total(runs, 1), "t": Total(last, 200)}
        )
        assert await store.compact_metric_totals("n", keep=()) == 2
        assert await store.metric_totals("n") == {"runs": 10, "t": 200}
        assert await store.merged_metric_totals("n") == {"runs": 10, "t": 200}
        assert await store.metric_totals("n", exclude={MERGED, "x"}) == {}

    async def test_each_node_has_its_own(self, store: Store) -> None:
        await store.save_metric_totals("n1", "p", {"runs": Total(TotalKind.SUM, 3)})
        await store.save_metric_totals("n2", "p", {"runs": Total(TotalKind.SUM, 4)})
        assert await store.compact_metric_totals("n1", keep=()) == 1
        assert await store.metric_totals("n1") == {"runs": 3}
        assert await store.metric_totals("n2") == {"runs": 4}
        assert await store.merged_metric_totals("n2") == {}

    async def test_retention_never_prunes_them(self, store: Store) -> None:
        await store.save_metric_totals("n", "p", {"runs": Total(TotalKind.SUM, 1)})
        await ended(store, RunStatus.SUCCEEDED)
        await store.prune(0, NOW + dt.timedelta(days=1))
        await store.prune_notifications(NOW + dt.timedelta(days=1))
        assert await store.metric_totals("n") == {"runs": 1}
