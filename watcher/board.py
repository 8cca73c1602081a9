"""What is not ok right now: every job with a condition, since when, and what covers it.

`dts-watcher status` prints it (from the state file), and `/metrics` exports it as the
condition gauges (from the running service): one picture, computed in one place, from
the baseline, the rule memory, the rules (`Rules.conditions`: a failure status, a delay
level, a stall, flapping, an expiry) and the silences, at a moment given as an argument.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.events import format_time
from watcher.kinds import SEVERITIES, Severity
from watcher.rules import Condition, JobMemory, Rules
from watcher.silencing import Silencing
from watcher.snapshot import FAILURE_STATUSES, JobKey, JobState

_BLANK = JobMemory()


@dataclass(frozen=True, slots=True)
class NotOk:
    """A job with at least one condition, and the silence covering it (if any)."""

    job: JobState
    conditions: tuple[Condition, ...]
    silenced: str | None

    @property
    def severity(self) -> Severity:
        return max((c.severity for c in self.conditions), key=SEVERITIES.index)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        job = self.job
        return {
            "job_id": job.job_id,
            "job_name": job.job_name,
            "region": job.region,
            "direction": job.direction,
            "account": job.account,
            "job_type": job.job_type,
            "status": job.status,
            "severity": self.severity,
            "silenced": self.silenced,
            "conditions": [
                {
                    "condition": c.name,
                    "kind": c.kind,
                    "severity": c.severity,
                    "since": format_time(c.since) if c.since else None,
                    "duration_seconds": round((now - c.since).total_seconds()) if c.since else None,
                }
                for c in self.conditions
            ],
        }


def not_ok(
    jobs: Iterable[JobState],
    memory: Mapping[JobKey, JobMemory],
    rules: Rules,
    silencing: Silencing,
    now: datetime,
) -> list[NotOk]:
    """Every job with a condition at `now`: the most severe first, then by job."""
    found = []
    for job in jobs:
        mem = memory.get(job.key, _BLANK)
        if not mem and job.status not in FAILURE_STATUSES:
            continue  # every other condition is in some rule's memory: a quick skip
        conditions = rules.conditions(job, mem, now)
        if conditions:
            silenced = silencing.covering(job, now) if silencing else None
            found.append(NotOk(job, tuple(conditions), silenced))
    found.sort(key=lambda row: (-SEVERITIES.index(row.severity), row.job.key))
    return found
