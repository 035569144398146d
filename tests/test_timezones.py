"""Time zone names: every name that is no zone is one clear `UnknownZone`."""

from __future__ import annotations

import pytest

from evercron.crontab import parse_crontab
from evercron.model import Job, JobError
from evercron.timezones import UnknownZone, load_zone

NOT_ZONES = [
    "America",  # a folder of the zone database
    "Etc",
    "A" * 300,  # longer than a file name may be
    "Mars/Base",
    "zone.tab",  # a data file of the database, not a zone
    "/etc/localtime",
    "../UTC",
    "",
    "UTC\0",
    "Europe/\udfff",
]


@pytest.mark.parametrize("name", NOT_ZONES)
def test_names_that_are_no_zone(name: str) -> None:
    with pytest.raises(UnknownZone) as caught:
        load_zone(name)
    assert str(caught.value).startswith('unknown time zone "')
    str(caught.value).encode("utf-8")  # quotable in a message whatever the name


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_zone_names(name: str) -> None:
    assert load_zone(name).key == name


@pytest.mark.parametrize("name", ["America", "Etc", "A" * 300])
def test_a_job_names_the_zone_field(name: str) -> None:
    with pytest.raises(JobError) as caught:
        Job.from_mapping({"name": "j", "schedule": "@daily", "command": "true", "timezone": name})
    assert str(caught.value) == f'timezone: unknown time zone "{name}"'


def test_a_crontab_zone_is_a_problem_on_its_line() -> None:
    parsed = parse_crontab("CRON_TZ=America\n@daily true\n", "jobs")
    assert [str(p) for p in parsed.problems] == ['jobs:1: unknown time zone "America"']
