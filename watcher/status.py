"""What the service knows about itself right now: one value that the cycle and the
publisher keep up to date, and that metrics, `/readyz` and the heartbeat read.

Nothing here binds back into the service: readers get counters, the baseline and two
functions to ask (the outbox depth, which is an SQLite read, and whether NATS is
connected), and never the parts that produce them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from watcher.board import NotOk, not_ok
from watcher.dts.client import ClientStats
from watcher.events import format_time
from watcher.publish import PublishStats
from watcher.rules import Memory, Rules
from watcher.silencing import NO_SILENCES, Silencing
from watcher.snapshot import Snapshot
from watcher.source_health import SourceHealth


@dataclass
class Status:
    client: ClientStats = field(default_factory=ClientStats)
    publishing: PublishStats = field(default_factory=PublishStats)
    outbox_depth: Callable[[], int] = lambda: 0
    nats_connected: Callable[[], bool] = lambda: False
    # Why events are not reaching JetStream although connected (the publisher's problem).
    publish_problem: Callable[[], str | None] = lambda: None
    dead_letters: Callable[[], int] = lambda: 0
    # Why the state cannot be saved right now (disk full, read-only), while it lasts.
    state_problem: str | None = None
    # Several replicas: why this one is not (yet) part of the cluster; how many shards it
    # holds (None with one replica).
    cluster_problem: Callable[[], str | None] = lambda: None
    shards_held: Callable[[], int | None] = lambda: None
    cycles: int = 0
    incomplete_cycles: int = 0
    events: dict[str, int] = field(default_factory=dict)  # by event type
    last_complete: datetime | None = None
    baseline: Snapshot | None = None  # the last known state of every tracked job
    health: SourceHealth = field(default_factory=SourceHealth)
    # Readiness ends when the last complete cycle is older than this (None: never).
    stale_after: float | None = None
    monotonic: Callable[[], float] = time.monotonic
    last_complete_at: float | None = None  # `monotonic()` then: immune to clock jumps
    # What is not ok (watcher.board): the rule memory saved with the baseline, the rules,
    # the silences and windows known now, and the watcher's clock.
    memory: Memory = field(default_factory=Memory)
    rules: Rules | None = None
    silencing: Callable[[], Silencing] = lambda: NO_SILENCES
    silences_followed: Callable[[], bool] = lambda: False
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def count_cycle(self, complete: bool, finished_at: datetime) -> None:
        self.cycles += 1
        if complete:
            self.last_complete = finished_at
            self.last_complete_at = self.monotonic()
        else:
            self.incomplete_cycles += 1

    def count_events(self, types: list[str]) -> None:
        for name in types:
            self.events[name] = self.events.get(name, 0) + 1

    def not_ok(self) -> list[NotOk]:
        """Every job with a condition right now (`watcher.board`)."""
        if self.baseline is None or self.rules is None:
            return []
        return not_ok(self.baseline, self.memory.jobs, self.rules, self.silencing(), self.now())

    @property
    def regions_unavailable(self) -> list[str]:
        return sorted(name for name, h in self.health.regions.items() if h.announced)

    def readiness(self) -> list[str]:
        """Why the watcher is not ready; an empty list means ready."""
        reasons = []
        if self.last_complete is None:
            reasons.append("no complete cycle yet: DTS has not been read completely since start")
        elif self.stale_after is not None and self.last_complete_at is not None:
            age = self.monotonic() - self.last_complete_at
            if age > self.stale_after:
                reasons.append(
                    f"the last complete cycle finished {age:.0f}s ago (more than "
                    f"{self.stale_after:g}s): DTS is not being read completely"
                )
        if not self.nats_connected():
            reasons.append("not connected to NATS: events wait in the outbox")
        elif problem := self.publish_problem():
            reasons.append(f"events wait in the outbox, JetStream does not take them: {problem}")
        if problem := self.cluster_problem():
            reasons.append(problem)
        if self.state_problem:
            reasons.append(
                f"the state cannot be saved, changes are detected again once it can: "
                f"{self.state_problem}"
            )
        return reasons

    def heartbeat(self) -> dict[str, Any]:
        """The data of a `heartbeat` event (reads the outbox depth: call it in a thread)."""
        by_status: dict[str, int] = {}
        for job in self.baseline or ():
            by_status[job.status] = by_status.get(job.status, 0) + 1
        return {
            "jobs": sum(by_status.values()),
            "jobs_by_status": dict(sorted(by_status.items())),
            "cycles": self.cycles,
            "incomplete_cycles": self.incomplete_cycles,
            "events_emitted": dict(sorted(self.events.items())),
            "outbox_depth": self.outbox_depth(),
            "dead_letters": self.dead_letters(),
            "last_complete_cycle": format_time(self.last_complete) if self.last_complete else None,
            "regions_unavailable": self.regions_unavailable,
            "nats_connected": self.nats_connected(),
        }
