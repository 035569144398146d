"""Job definitions: validation with messages that name the field, and the round trip."""

from __future__ import annotations

import itertools

import pytest

from evercron.model import (
    Concurrency,
    EventFact,
    Job,
    JobError,
    Misfire,
    NotifyEvent,
    RunStatus,
    possible_events,
    result_events,
)


def test_defaults_follow_the_design() -> None:
    job = Job.from_mapping({"name": "j", "schedule": "@daily", "command": "true"})
    assert job.concurrency is Concurrency.FORBID
    assert job.misfire is Misfire.RUN_ONCE
    assert (job.misfire_grace, job.kill_grace, job.max_output) == (60, 10, 1024 * 1024)
    assert job.timezone is None and job.zone is None and job.enabled


def test_values_in_user_spellings_and_round_trip() -> None:
    data = {
        "name": "nightly.backup-1",
        "schedule": "0 3 * * *",
        "command": "backup --all",
        "timezone": "Europe/Berlin",
        "timeout": "1h30m",
        "warn_after": "20m",
        "concurrency": "replace",
        "misfire": "run-all",
        "misfire_grace": "5m",
        "jitter": 30,
        "retries": 2,
        "retry_backoff": "1m",
        "env": {"A": "1"},
        "cwd": "/srv",
        "umask": "027",
        "nice": 5,
        "limits": {"nofile": 1024},
        "kill_grace": "2s",
        "kill_mode": "main",
        "max_output": "512KiB",
        "log_output": True,
        "enabled": False,
        "description": "d",
    }
    job = Job.from_mapping(data)
    assert job.warn_after == 1200
    assert job.timeout == 5400 and job.misfire_grace == 300 and job.umask == 0o027
    assert job.max_output == 512 * 1024 and job.kill_mode == "main"
    assert Job.from_mapping(job.to_mapping()) == job


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "name: required"),
        ({"name": "bad name"}, 'name "bad name"'),
        ({"schedule": "0 24 * * *"}, 'schedule: hour field "24"'),
        ({"command": 5}, "command: expected a string"),
        ({"timezone": "Mars/Base"}, 'unknown time zone "Mars/Base"'),
        ({"timeout": "soon"}, "timeout: invalid duration"),
        ({"timeout": 0}, "timeout: must be more than 0"),
        ({"warn_after": "-1s"}, "warn_after"),
        ({"warn_after": 0}, "warn_after: must be more than 0"),
        ({"concurrency": "maybe"}, 'concurrency: "maybe" is not one of allow, forbid, replace'),
        ({"misfire": "never"}, "misfire:"),
        ({"retries": -1}, "retries: expected a whole number from 0 to 100"),
        ({"retries": True}, "retries"),
        ({"env": {"A": 1}}, "env: expected a table of strings"),
        ({"command": "echo a\0b"}, "command: must not contain a NUL character"),
        ({"cwd": "/tmp\0x"}, "cwd: must not contain a NUL character"),
        ({"env": {"A": "x\0y"}}, "env: A must not contain a NUL character"),
        ({"env": {"A=B": "x"}}, 'env: "A=B" is not a variable name'),
        ({"env": {"": "x"}}, 'env: "" is not a variable name'),
        ({"umask": "999"}, "umask"),
        ({"nice": 30}, "nice"),
        ({"limits": {"rss": 5}}, 'unknown limit "rss"'),
        ({"max_output": "lots"}, "max_output: invalid size"),
        ({"enabled": "yes"}, "enabled: expected true or false"),
        ({"kill_mode": "all"}, 'kill_mode: "all"'),
        ({"colour": "blue"}, "unknown field(s): colour"),
        ({"timeout": True}, "timeout: expected a duration"),
        ({"timeout": 1e308}, "timeout: invalid duration 1e+308: at most 31536000s (a year)"),
        ({"jitter": float("inf")}, "jitter: invalid duration inf: at most 31536000s"),
        ({"retry_backoff": float("nan")}, "retry_backoff: invalid duration nan"),
        ({"max_output": 10**30}, "max_output: invalid size 1000000000000000000000000000000: at"),
        ({"max_output": 1.5}, "max_output: expected a size"),
        ({"umask": 18.5}, 'umask: "18.5" is not an octal number'),
        ({"umask": True}, 'umask: "True" is not an octal number'),
        ({"limits": {"nofile": 2**63}}, "limits.nofile: expected a whole number from 0 to"),
        ({"command": "echo \udfff"}, "command: is not valid Unicode text"),
        ({"description": "\ud800"}, "description: is not valid Unicode text"),
        ({"cwd": "/tmp/\udcff"}, "cwd: is not valid Unicode text"),
        ({"shell": "/bin/\udfff"}, "shell: is not valid Unicode text"),
        ({"schedule": "@daily\udfff"}, "schedule: is not valid Unicode text"),
        ({"name": "\udfff"}, "name: is not valid Unicode text"),
        ({"env": {"A": "\udfff"}}, "env: A is not valid Unicode text"),
        ({"env": {"\udfff": "x"}}, 'env: "\\udfff" is not a variable name'),
        ({"umask": "\udfff"}, 'umask: "\\udfff" is not an octal number'),
        ({"concurrency": "\udfff"}, 'concurrency: "\\udfff" is not one of'),
        ({"\udfff": 1}, "unknown field(s): \\udfff"),
    ],
)
def test_problems_name_the_field(change: dict[str, object], message: str) -> None:
    data = {"name": "j", "schedule": "@daily", "command": "true", **change}
    with pytest.raises(JobError) as caught:
        Job.from_mapping(data)
    assert message in str(caught.value)
    str(caught.value).encode("utf-8")  # every message can be shown and sent as JSON


def test_finished_statuses() -> None:
    assert not RunStatus.RUNNING.finished
    assert all(s.finished for s in RunStatus if s is not RunStatus.RUNNING)


class TestResultEvents:
    """Which events a result makes, given the job's previous outcome: state changes are
    new, repeats are marked so default channels stay quiet."""

    F, S = RunStatus.FAILED, RunStatus.SUCCEEDED

    @pytest.mark.parametrize(
        ("status", "previous", "facts"),
        [
            (S, None, [EventFact(NotifyEvent.SUCCEEDED)]),
            (S, S, [EventFact(NotifyEvent.SUCCEEDED, repeat=True)]),
            (S, F, [EventFact(NotifyEvent.SUCCEEDED), EventFact(NotifyEvent.RECOVERED)]),
            (
                S,
                RunStatus.TIMED_OUT,
                [EventFact(NotifyEvent.SUCCEEDED), EventFact(NotifyEvent.RECOVERED)],
            ),
            (F, None, [EventFact(NotifyEvent.FAILED)]),
            (F, S, [EventFact(NotifyEvent.FAILED)]),
            (F, F, [EventFact(NotifyEvent.FAILED, repeat=True)]),
            (RunStatus.KILLED, RunStatus.TIMED_OUT, [EventFact(NotifyEvent.FAILED, repeat=True)]),
            (RunStatus.TIMED_OUT, S, [EventFact(NotifyEvent.FAILED)]),
            (RunStatus.LOST, F, [EventFact(NotifyEvent.LOST)]),
            (RunStatus.SKIPPED, S, [EventFact(NotifyEvent.MISSED)]),
            (RunStatus.RUNNING, S, []),
        ],
    )
    def test_events(
        self, status: RunStatus, previous: RunStatus | None, facts: list[EventFact]
    ) -> None:
        assert result_events(status, previous) == facts

    def test_possible_events_are_those_some_history_makes(self) -> None:
        assert possible_events(self.S) == {NotifyEvent.SUCCEEDED, NotifyEvent.RECOVERED}
        assert possible_events(RunStatus.KILLED) == {NotifyEvent.FAILED}
        assert possible_events(RunStatus.SKIPPED) == {NotifyEvent.MISSED}
        assert possible_events(RunStatus.RUNNING) == set()

    def test_ten_failures_are_one_change_then_a_recovery(self) -> None:
        history = [self.S] + [self.F] * 10 + [self.S]
        new = [
            fact.event
            for previous, status in itertools.pairwise(history)
            for fact in result_events(status, previous)
            if not fact.repeat
        ]
        assert new == [NotifyEvent.FAILED, NotifyEvent.SUCCEEDED, NotifyEvent.RECOVERED]
