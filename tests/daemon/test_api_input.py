"""Bad input through the API: a clear 422 naming the field, never a 500 or a reset."""

from __future__ import annotations

from typing import Any

from tests.daemon.conftest import DaemonProcess

JOB = {"name": "j", "schedule": "@yearly", "command": "true"}


def test_zone_names_that_are_no_zone(start_daemon: Any) -> None:
    daemon: DaemonProcess = start_daemon()
    for name in ("America", "Etc", "A" * 300):
        response = daemon.http.post("/api/v1/jobs", json={**JOB, "timezone": name})
        assert response.status_code == 422, response.text
        assert response.json() == {"error": f'timezone: unknown time zone "{name}"'}
    # The same connection still serves (a 500 used to reset it).
    assert daemon.api("GET", "/api/v1/jobs") == []
