"""Which node claims a firing: tags, capacity, and a ranking of the nodes per firing.

Correctness rests on the claim key alone (a firing is owned by whoever inserts its row);
placement only decides who tries first, so that firings spread over the live nodes and a
dead node's share is taken over within a fraction of a second:

- The nodes that may run a firing are the live ones (not draining) that have every tag
  of the job's `run_on`. They are ranked per firing by rendezvous hashing of (job, time,
  attempt, node name): every node computes the same order from the same view, and a
  node joining or leaving moves only its own share.
- The first node claims at once; the k-th tries `k * FAILOVER_STEP` later, which costs
  nothing when the first one claimed (its insert finds the key taken) and starts the
  firing when the first one is dead or stalled.
- A node at its `max_running` lets the next one take the firing; the last in line
  records it `skipped` when it cannot take it either. A firing no live node has the tags
  for is recorded `skipped` by the first node of the same ranking over every live node.

The view is this node's latest look at the nodes (renewed with its lease); views of
different nodes may differ for a moment, which at worst makes two nodes try at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evercron.model import Job
from evercron.store import Node, NodeInfo, NodeState

FAILOVER_STEP = 0.25
"""Seconds between the tries of two nodes next to each other in a firing's ranking."""


@dataclass(frozen=True)
class Turn:
    """When this node tries to claim a firing (seconds after the claim time) and, when it
    is to record the firing as not run, why."""

    delay: float
    skip_reason: str | None = None


class Cluster:
    """This node's view of the nodes and of its own lease.

    The lease is healthy while the last successful renewal was *sent* less than the lease
    minus one renewal period ago, on this process's monotonic clock: past that, the node
    claims nothing and ends its commands itself, before others may take it for dead.
    """

    def __init__(
        self, me: NodeInfo, monotonic: Callable[[], float] = time.monotonic, leased: bool = True
    ) -> None:
        self.me = me
        self._monotonic = monotonic
        self._leased = leased
        self._renewed_at: float | None = None
        self._live: list[Node] = []
        self.drained = False
        """Whether this node was asked to stop claiming (`evercron drain`)."""

    @classmethod
    def alone(cls, name: str, tags: Sequence[str] = ()) -> Cluster:
        """A node on its own with no lease to keep (a store nobody else uses)."""
        me = NodeInfo(name, "", "", tuple(tags), "", 0, math.inf)
        cluster = cls(me, leased=False)
        cluster.update([Node(name, tuple(tags), NodeState.ALIVE, _now(), "", 0, (), math.inf)])
        return cluster

    @property
    def period(self) -> float:
        """Seconds between two renewals of the lease."""
        return self.me.lease / 3

    # -- what membership tells it ------------------------------------------------------

    def renewed(self, sent_at: float, nodes: Sequence[Node]) -> None:
        """A renewal sent at `sent_at` (monotonic) succeeded; `nodes` is what it saw."""
        if self._renewed_at is None or sent_at > self._renewed_at:
            self._renewed_at = sent_at
        self.update(nodes)

    def update(self, nodes: Sequence[Node]) -> None:
        """Take a fresh look at the nodes."""
        self._live = sorted(
            (node for node in nodes if node.state is NodeState.ALIVE), key=lambda n: n.name
        )
        mine = [node for node in nodes if node.name == self.me.name]
        self.drained = bool(mine) and mine[0].state is NodeState.DRAINING

    # -- the lease ---------------------------------------------------------------------

    def fence_in(self) -> float:
        """Seconds until this node must have ended its commands (negative: overdue)."""
        if not self._leased:
            return math.inf
        if self._renewed_at is None:
            return -math.inf
        return self._renewed_at + self.me.lease - self.period - self._monotonic()

    def expires_in(self) -> float:
        """Seconds until others may take this node for dead (its lease's end)."""
        return self.fence_in() + self.period

    def healthy(self) -> bool:
        """Whether the lease allows claiming and running commands."""
        return self.fence_in() > 0

    # -- placement ---------------------------------------------------------------------

    def turn(self, job: Job, scheduled_at: dt.datetime, attempt: int, running: int) -> Turn | None:
        """This node's turn for a firing of `job` (see the module text); None: it is
        other nodes' to claim. `running` is how many commands this node runs now."""
        wanted = set(job.run_on)
        able = [node for node in self._live if wanted <= set(node.tags)]
        reason = None
        if not able:
            able = list(self._live)
            reason = f"no live node has the tags run_on = {sorted(wanted)}"
        if len(able) == 1:  # (one node, the common case: no ranking to compute)
            order = [able[0].name]
        else:
            ranked = sorted(able, key=_ranking(job, scheduled_at, attempt), reverse=True)
            order = [node.name for node in ranked]
        if self.me.name not in order:
            return None
        place = order.index(self.me.name)
        limit = self.me.max_running
        if reason is None and limit is not None and running >= limit:
            if place != len(order) - 1:
                return None
            reason = "every node that can run it is at its max_running"
        return Turn(place * FAILOVER_STEP, reason)

    def fits(self, job: Job) -> bool:
        """Whether this node has every tag the job asks for."""
        return set(job.run_on) <= set(self.me.tags)

    def live_with(self, tags: Sequence[str]) -> list[str]:
        """The live nodes that have all of `tags`, by name."""
        return [node.name for node in self._live if set(tags) <= set(node.tags)]


def _ranking(job: Job, scheduled_at: dt.datetime, attempt: int) -> Callable[[Node], int]:
    """A node's weight for one firing (rendezvous hashing: the highest goes first)."""
    firing = f"{job.name}\0{scheduled_at.timestamp():.6f}\0{attempt}\0".encode()

    def rank(node: Node) -> int:
        digest = hashlib.blake2b(firing + node.name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    return rank


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
