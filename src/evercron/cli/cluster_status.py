"""The cluster part of `evercron status`: this node, every node, disagreements."""

from __future__ import annotations

import datetime as dt
from typing import Any


def status_lines(data: dict[str, Any]) -> list[str]:
    """The cluster part of `evercron status`."""
    lines = [f"node {data.get('node') or '?'} on {data.get('store') or '?'}"]
    for node in data.get("nodes", []):
        seen = dt.datetime.fromisoformat(node["heartbeat_at"]).astimezone()
        running = ", ".join(map(str, node["running"])) or "none"
        lines.append(
            f"  node {node['name']}: {node['state']}, tags {','.join(node['tags']) or '-'}, "
            f"version {node['version']}, pid {node['pid']}, heartbeat "
            f"{seen:%H:%M:%S}, running runs: {running}"
        )
    for item in data.get("disagreements", []):
        winner = item["applied_by"]
        whose = f"node {winner}'s definition, applied last, is in force"
        lines.append(
            f"  disagreement: node {item['node']}'s files define job {item['job']} "
            f"otherwise ({whose if winner else 'it is not stored'})"
        )
    return lines
