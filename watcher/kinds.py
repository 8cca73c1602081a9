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

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from watcher.snapshot import FAILURE_STATUSES, SUSPENDING

Severity = Literal["info", "warning", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "critical")

Data = Mapping[str, Any]

# The common `data` fields of every job event (JSON Schema).
COMMON_JOB_DATA: Final[dict[str, dict[str, Any]]] = {
    "job_id": {"type": "string", "minLength": 1},
    "job_name": {"type": "string"},
    "region": {"type": "string", "minLength": 1},
    "direction": {"type": "string"},
    "status": {"type": "string"},
    "job_type": {"enum": ["sync", "migration", "subscribe"]},
    "account": {"type": "string", "minLength": 1},
}
# Any event's `data` may carry `truncated` (never otherwise): it was over the size limit,
# and this says what was cut (`watcher.wire`).
TRUNCATED: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["original_bytes", "limit_bytes"],
    "properties": {
        "original_bytes": {"type": "integer"},
        "limit_bytes": {"type": "integer"},
        "removed": {"type": "array", "items": {"type": "string"}},
        "shortened": {"type": "array", "items": {"type": "string"}},
    },
}
_NULLABLE_STR: Final = {"type": ["string", "null"]}
_JOB_OBJECT: Final = {"type": "object", "required": ["job_id", "region", "status"]}
_TIME_OR_NULL: Final = {"type": ["string", "null"], "format": "date-time"}
# A summary cuts long upstream texts here and says so with an ellipsis.
SUMMARY_TEXT_LIMIT: Final = 160


@dataclass(frozen=True)
class Kind:
    """One event kind.

    `severity(data)` is the kind's severity rule; a rule that knows better (a delay level
    among custom ones) passes its own. `summary(data)` is the detail that follows the
    common part of a summary line. `log_fields` are the `data` keys copied onto the
    event's JSON log line, under the name given (the log line's own `level` must not be
    shadowed by a delay level).
    """

    name: str
    scope: Literal["job", "watcher"]
    when: str  # one line for people: when the event is emitted
    severity: Callable[[Data], Severity]
    properties: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    summary: Callable[[Data], str] = lambda data: ""
    log_fields: Mapping[str, str] = field(default_factory=dict)
    carries_job: bool = False  # data.job: the whole normalized job

    @property
    def type(self) -> str:
        return f"dts.{self.scope}.{self.name}"


def always(severity: Severity) -> Callable[[Data], Severity]:
    return lambda data: severity


def shorten(text: object, limit: int = SUMMARY_TEXT_LIMIT) -> str:
    """One line of at most `limit` characters; a cut is marked with an ellipsis."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- job kinds ---------------------------------------------------------------------------


def _status_severity(data: Data) -> Severity:
    status = data.get("status")
    if status in FAILURE_STATUSES:
        return "critical"
    return "warning" if status == SUSPENDING else "info"


def _status_summary(data: Data) -> str:
    detail = f"{data.get('previous_status')} -> {data.get('status')}"
    if data.get("error_message") and data.get("status") in FAILURE_STATUSES:
        detail += f": {shorten(data['error_message'])}"
    return detail


def _level_severity(data: Data) -> Severity:
    level = data.get("level")
    if level == "ok":
        return "info"
    return "critical" if level == "critical" else "warning"


def _delay_summary(data: Data) -> str:
    return (
        f"{data.get('previous_level')} -> {data.get('level')} "
        f"(delay {data.get('delay_seconds')}s, threshold {data.get('threshold_seconds')}s)"
    )


def _precheck_summary(data: Data) -> str:
    items = data.get("failed_items") or []
    return ", ".join(
        f"{i.get('item_name')}: {shorten(i.get('error_message'))} "
        f"[repair: {i.get('repair_method')}]"
        for i in items
        if isinstance(i, Mapping)
    )


def _presence_summary(data: Data) -> str:
    return f"status {data.get('status')}"


DISCOVERED = Kind(
    "discovered",
    "job",
    "a job is seen for the first time",
    always("info"),
    {"job": _JOB_OBJECT},
    ("job",),
    _presence_summary,
    carries_job=True,
)
REMOVED = Kind(
    "removed",
    "job",
    "a job is gone from complete listings (`rules.removed_after` of them)",
    always("info"),
    {"job": _JOB_OBJECT},
    ("job",),
    _presence_summary,
    carries_job=True,
)
STATUS_CHANGED = Kind(
    "status_changed",
    "job",
    "the job's status moved (or it was first seen in a failure status)",
    _status_severity,
    {
        "previous_status": _NULLABLE_STR,
        "error_message": _NULLABLE_STR,
        "recovered_from": {"type": "string"},
    },
    ("previous_status", "error_message"),
    _status_summary,
    {"previous_status": "previous_status"},
)
DELAY_THRESHOLD_CROSSED = Kind(
    "delay_threshold_crossed",
    "job",
    "the delay level moved, up or back down",
    _level_severity,
    {
        "level": {"type": "string"},
        "previous_level": {"type": "string"},
        "delay_seconds": {"type": "integer", "minimum": 0},
        "threshold_seconds": {"type": "number", "exclusiveMinimum": 0},
        "change": {"enum": ["up", "down"]},
    },
    ("level", "previous_level", "delay_seconds", "threshold_seconds"),
    _delay_summary,
    {
        "level": "delay_level",
        "previous_level": "previous_delay_level",
        "delay_seconds": "delay_seconds",
    },
)
PRECHECK_FAILED = Kind(
    "precheck_failed",
    "job",
    "precheck items newly failed",
    always("critical"),
    {
        "failed_items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["item_name", "error_message", "repair_method"],
                "properties": {
                    "item_name": {"type": "string"},
                    "error_message": _NULLABLE_STR,
                    "repair_method": _NULLABLE_STR,
                },
            },
        }
    },
    ("failed_items",),
    _precheck_summary,
)
INIT_FAILED = Kind(
    "init_failed",
    "job",
    "schema (structure) or full-data initialization failed",
    always("critical"),
    {"stage": {"enum": ["structure", "data"]}, "error_message": _NULLABLE_STR},
    ("stage", "error_message"),
    lambda data: f"{data.get('stage')} initialization: {shorten(data.get('error_message'))}",
    {"stage": "stage"},
)


# -- the watcher's own kinds -------------------------------------------------------------


def _identity_summary(data: Data) -> str:
    regions = data.get("regions")
    where = ", ".join(map(str, regions)) if isinstance(regions, list) else "?"
    return f"version {data.get('version')}, regions {where}"


def _incomplete_summary(data: Data) -> str:
    regions = data.get("regions")
    if not isinstance(regions, Mapping):
        return _fields_summary(data)
    parts = []
    for name, why in sorted(regions.items()):
        why = why if isinstance(why, Mapping) else {}
        parts.append(f"{name}: {why.get('error_code')} ({shorten(why.get('error'))})")
    return "; ".join(parts)


def _unavailable_summary(data: Data) -> str:
    return (
        f"{data.get('region')} unreadable for {data.get('failed_cycles')} cycles since "
        f"{data.get('unavailable_since')}: {data.get('error_code')} "
        f"({shorten(data.get('error_message'))})"
    )


def _recovered_summary(data: Data) -> str:
    return (
        f"{data.get('region')} readable again after {data.get('failed_cycles')} failed "
        f"cycles (since {data.get('unavailable_since')}, last {data.get('last_error_code')})"
    )


def _heartbeat_summary(data: Data) -> str:
    return (
        f"{data.get('jobs')} jobs, {data.get('cycles')} cycles "
        f"({data.get('incomplete_cycles')} incomplete), outbox {data.get('outbox_depth')}, "
        f"NATS {'connected' if data.get('nats_connected') else 'disconnected'}"
    )


def _fields_summary(data: Data) -> str:
    """Whatever the data holds, `key=value` each, every value whole but shortened."""
    return " ".join(f"{key}={shorten(value)}" for key, value in sorted(data.items()))


_IDENTITY = {
    "version": {"type": "string"},
    "settings_digest": {"type": "string"},
    "regions": {"type": "array", "items": {"type": "string"}},
}
STARTED = Kind(
    "started", "watcher", "the service started", always("info"), _IDENTITY, (), _identity_summary
)
STOPPED = Kind(
    "stopped",
    "watcher",
    "the service is stopping (after its last cycle)",
    always("info"),
    _IDENTITY,
    (),
    _identity_summary,
)
HEARTBEAT = Kind(
    "heartbeat",
    "watcher",
    "every `health.heartbeat_interval` seconds: the watcher is alive, and its counters",
    always("info"),
    {
        "jobs": {"type": "integer"},
        "jobs_by_status": {"type": "object"},
        "cycles": {"type": "integer"},
        "incomplete_cycles": {"type": "integer"},
        "events_emitted": {"type": "object"},
        "outbox_depth": {"type": "integer"},
        "dead_letters": {"type": "integer"},
        "last_complete_cycle": _TIME_OR_NULL,
        "regions_unavailable": {"type": "array", "items": {"type": "string"}},
        "nats_connected": {"type": "boolean"},
    },
    (),
    _heartbeat_summary,
)
CYCLE_INCOMPLETE = Kind(
    "cycle_incomplete",
    "watcher",
    "a cycle could not read every region completely (no job is judged gone from it)",
    always("warning"),
    {"regions": {"type": "object"}},
    (),
    _incomplete_summary,
)
SOURCE_UNAVAILABLE = Kind(
    "source_unavailable",
    "watcher",
    "a region could not be read for `health.unavailable_after` cycles in a row",
    always("critical"),
    {
        "region": {"type": "string"},
        "failed_cycles": {"type": "integer"},
        "unavailable_since": _TIME_OR_NULL,
        "error_code": _NULLABLE_STR,
        "error_message": _NULLABLE_STR,
    },
    (),
    _unavailable_summary,
)
SOURCE_RECOVERED = Kind(
    "source_recovered",
    "watcher",
    "a region announced unavailable was read completely again",
    always("info"),
    {
        "region": {"type": "string"},
        "unavailable_since": _TIME_OR_NULL,
        "failed_cycles": {"type": "integer"},
        "last_error_code": _NULLABLE_STR,
    },
    (),
    _recovered_summary,
)


def _dead_letter_summary(data: Data) -> str:
    return (
        f"{data.get('event_type')} {data.get('event_id')} on {shorten(data.get('subject'), 80)} "
        f"set aside ({data.get('bytes')} bytes): {shorten(data.get('reason'))}"
    )


EVENT_DEAD_LETTERED = Kind(
    "event_dead_lettered",
    "watcher",
    "JetStream refused an event for good (too large, an unusable subject): it was set "
    "aside in the state file's `dead_letters` table and the outbox went on",
    always("critical"),
    {
        "event_id": {"type": "string"},
        "event_type": _NULLABLE_STR,
        "subject": {"type": "string"},
        "bytes": {"type": "integer"},
        "reason": {"type": "string"},
    },
    (),
    _dead_letter_summary,
)

KINDS: Final[dict[str, Kind]] = {
    kind.name: kind
    for kind in (
        DISCOVERED,
        REMOVED,
        STATUS_CHANGED,
        DELAY_THRESHOLD_CROSSED,
        PRECHECK_FAILED,
        INIT_FAILED,
        STARTED,
        STOPPED,
        HEARTBEAT,
        CYCLE_INCOMPLETE,
        SOURCE_UNAVAILABLE,
        SOURCE_RECOVERED,
        EVENT_DEAD_LETTERED,
    )
}
JOB_KINDS: Final = tuple(name for name, kind in KINDS.items() if kind.scope == "job")
WATCHER_KINDS: Final = tuple(name for name, kind in KINDS.items() if kind.scope == "watcher")


def summary_detail(name: str, data: Data) -> str:
    """The detail part of a summary line for a kind (any data; unknown kinds included)."""
    kind = KINDS.get(name)
    try:
        return kind.summary(data) if kind is not None else _fields_summary(data)
    except (TypeError, ValueError, AttributeError):  # a foreign event of odd shape
        return _fields_summary(data)
