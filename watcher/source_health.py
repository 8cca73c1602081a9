"""Is the watcher blind? Per-shard read health, turned into watcher events. Pure.

A shard is an account's region (`watcher.shards`); its events name the `region`, and the
`account` too where it is not the default one.

Silence must never look like "all is well". Every incomplete cycle already produces a
`cycle_incomplete` event; on top of that, a region that could not be read completely for
`unavailable_after` consecutive cycles is announced once as `source_unavailable` (with
the last error code and message), and once it reads completely again as
`source_recovered` (with how long it was out). Like detect(), this module reads no clock
and does no I/O: the service passes the time in and publishes what comes out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from watcher.events import Severity, format_time
from watcher.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class RegionHealth:
    failures: int = 0  # consecutive incomplete reads
    since: datetime | None = None  # first failure of the current run of failures
    announced: bool = False  # source_unavailable was sent for this run
    last_code: str | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class SourceHealth:
    regions: dict[str, RegionHealth] = field(default_factory=dict)


# (kind, severity, data) triples; the service turns them into watcher events.
Announcement = tuple[str, Severity, dict[str, Any]]


def track(
    health: SourceHealth, snapshot: Snapshot, unavailable_after: int, now: datetime
) -> tuple[list[Announcement], SourceHealth]:
    out: list[Announcement] = []
    regions: dict[str, RegionHealth] = {}
    for name, outcome in sorted(snapshot.regions.items()):
        state = health.regions.get(name, RegionHealth())
        if outcome.complete:
            if state.announced:
                out.append(
                    (
                        "source_recovered",
                        "info",
                        {
                            **outcome.where(),
                            "unavailable_since": format_time(state.since) if state.since else None,
                            "failed_cycles": state.failures,
                            "last_error_code": state.last_code,
                        },
                    )
                )
            continue  # healthy regions need no memory
        state = replace(
            state,
            failures=state.failures + 1,
            since=state.since or now,
            last_code=outcome.error_code,
            last_error=outcome.error,
        )
        if state.failures >= unavailable_after and not state.announced:
            state = replace(state, announced=True)
            out.append(
                (
                    "source_unavailable",
                    "critical",
                    {
                        **outcome.where(),
                        "failed_cycles": state.failures,
                        "unavailable_since": format_time(state.since) if state.since else None,
                        "error_code": state.last_code,
                        "error_message": state.last_error,
                    },
                )
            )
        regions[name] = state
    return out, SourceHealth(regions)
