"""Every event kind, declared once: name, severity rule, `data` schema, summary, log fields.

This registry is the contract's table of kinds (README "The event contract") in code.
Everything that needs to know about a kind derives from it:

- `JOB_KINDS` / `WATCHER_KINDS`, and so `tail --kind` and the subjects;
- `dts-watcher schema` (`watcher.events.json_schema`): each kind's `data` properties;
- the one-line summary `tail` and the demo print (`watcher.events.summary`);
- the fields of each event's JSON log line (`Event.log_fields`);
- the severity of an event whose rule does not decide it itself.

Adding a kind is one entry here (and a rule that emits it: docs/architecture.md).
"""

from typing import Final

from watcher.kinds import jobs, own
from watcher.kinds.base import (
    COMMON_JOB_DATA,
    SEVERITIES,
    SUMMARY_TEXT_LIMIT,
    TRUNCATED,
    Data,
    Kind,
    Severity,
    always,
    fields_summary,
    shorten,
)
from watcher.kinds.jobs import (
    DELAY_THRESHOLD_CROSSED,
    DISCOVERED,
    EXPIRING,
    FLAPPING,
    INIT_FAILED,
    PRECHECK_FAILED,
    REMINDER,
    REMOVED,
    STALLED,
    STATUS_CHANGED,
)
from watcher.kinds.own import (
    CYCLE_INCOMPLETE,
    EVENT_DEAD_LETTERED,
    HEARTBEAT,
    SHARD_ACQUIRED,
    SHARD_RELEASED,
    SOURCE_RECOVERED,
    SOURCE_UNAVAILABLE,
    STARTED,
    STOPPED,
)

__all__ = [
    "COMMON_JOB_DATA",
    "CYCLE_INCOMPLETE",
    "DELAY_THRESHOLD_CROSSED",
    "DISCOVERED",
    "EVENT_DEAD_LETTERED",
    "EXPIRING",
    "FLAPPING",
    "HEARTBEAT",
    "INIT_FAILED",
    "JOB_KINDS",
    "KINDS",
    "PRECHECK_FAILED",
    "REMINDER",
    "REMOVED",
    "SEVERITIES",
    "SHARD_ACQUIRED",
    "SHARD_RELEASED",
    "SOURCE_RECOVERED",
    "SOURCE_UNAVAILABLE",
    "STALLED",
    "STARTED",
    "STATUS_CHANGED",
    "STOPPED",
    "SUMMARY_TEXT_LIMIT",
    "TRUNCATED",
    "WATCHER_KINDS",
    "Data",
    "Kind",
    "Severity",
    "always",
    "fields_summary",
    "shorten",
    "summary_detail",
]

KINDS: Final[dict[str, Kind]] = {kind.name: kind for kind in (*jobs.ALL, *own.ALL)}
JOB_KINDS: Final = tuple(name for name, kind in KINDS.items() if kind.scope == "job")
WATCHER_KINDS: Final = tuple(name for name, kind in KINDS.items() if kind.scope == "watcher")


def summary_detail(name: str, data: Data) -> str:
    """The detail part of a summary line for a kind (any data; unknown kinds included)."""
    kind = KINDS.get(name)
    try:
        return kind.summary(data) if kind is not None else fields_summary(data)
    except (TypeError, ValueError, AttributeError):  # a foreign event of odd shape
        return fields_summary(data)
