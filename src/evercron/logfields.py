"""What a log line is about, for structured logs.

`log.info("run %d ended", run_id, extra=about(job=name, run=run_id))` gives the record
`job` and `run` attributes: the JSON log format (`evercron serve --log-format json`)
writes them as fields of their own, the text format leaves them to the message.
"""

from __future__ import annotations

FIELDS = ("job", "run", "node")
"""The record attributes the JSON log format writes when they are set."""


def about(
    job: str | None = None, run: int | None = None, node: str | None = None
) -> dict[str, object]:
    """The `extra` of a log call about a job, a run and/or a node (unset ones left out)."""
    given = {"job": job, "run": run, "node": node}
    return {key: value for key, value in given.items() if value is not None}
