"""The kinds of job events: what changed about a DTS job (contract v1 and v1.1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from watcher.kinds.base import (
    JOB_OBJECT,
    NULLABLE_INT,
    NULLABLE_STR,
    Data,
    Kind,
    Severity,
    always,
    shorten,
)
from watcher.snapshot import FAILURE_STATUSES, RETRYING, SUSPENDING


def _status_severity(data: Data) -> Severity:
    status = data.get("status")
    if status in FAILURE_STATUSES:
        return "critical"
    return "warning" if status in (SUSPENDING, RETRYING) else "info"


def _status_summary(data: Data) -> str:
    detail = f"{data.get('previous_status')} -> {data.get('status')}"
    retry = data.get("retry")
    if isinstance(retry, Mapping):
        detail += (
            f" (retry {retry.get('count')}, {retry.get('retry_seconds')}s of "
            f"{retry.get('max_retry_seconds')}s, {retry.get('target')}: "
            f"{shorten(retry.get('error_message'))})"
        )
    if data.get("error_message") and data.get("status") in FAILURE_STATUSES:
        detail += f": {shorten(data['error_message'])}"
    details = data.get("error_details")
    if isinstance(details, list) and details:
        detail += (
            " ["
            + ", ".join(
                f"{d.get('error_code')}: {d.get('help_url')}"
                for d in details
                if isinstance(d, Mapping)
            )
            + "]"
        )
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
    {"job": JOB_OBJECT},
    ("job",),
    _presence_summary,
    carries_job=True,
)
REMOVED = Kind(
    "removed",
    "job",
    "a job is gone from complete listings (`rules.removed_after` of them)",
    always("info"),
    {"job": JOB_OBJECT},
    ("job",),
    _presence_summary,
    carries_job=True,
)
STATUS_CHANGED = Kind(
    "status_changed",
    "job",
    "the job's status moved (or it was first seen failed or retrying)",
    _status_severity,
    {
        "previous_status": NULLABLE_STR,
        "error_message": NULLABLE_STR,
        "recovered_from": {"type": "string"},
        # DescribeDtsJobs' RetryState, when the job entered Retrying.
        "retry": {
            "type": "object",
            "required": ["count", "retry_seconds", "max_retry_seconds", "target", "module"],
            "properties": {
                "count": NULLABLE_INT,
                "retry_seconds": NULLABLE_INT,
                "max_retry_seconds": NULLABLE_INT,
                "target": NULLABLE_STR,
                "module": NULLABLE_STR,
                "error_message": NULLABLE_STR,
            },
        },
        # DescribeDtsJobs' ErrorDetails, when DTS gives them: a code and a help link.
        "error_details": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["error_code", "help_url"],
                "properties": {"error_code": NULLABLE_STR, "help_url": NULLABLE_STR},
            },
        },
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
                    "error_message": NULLABLE_STR,
                    "repair_method": NULLABLE_STR,
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
    {"stage": {"enum": ["structure", "data"]}, "error_message": NULLABLE_STR},
    ("stage", "error_message"),
    lambda data: f"{data.get('stage')} initialization: {shorten(data.get('error_message'))}",
    {"stage": "stage"},
)


# -- alert semantics (Contract v1.1): rules/stall.py, flap.py, reminder.py, expiry.py -----


def _up_severity(up: Severity) -> Callable[[Data], Severity]:
    return lambda data: up if data.get("change") == "up" else "info"


def _stalled_summary(data: Data) -> str:
    what = "not moving" if data.get("change") == "up" else "moving again"
    point = f", checkpoint {data['checkpoint']}" if data.get("checkpoint") is not None else ""
    return f"{what} for {data.get('stalled_seconds')}s (delay {data.get('delay_seconds')}s{point})"


def _days_left(data: Data) -> float | None:
    days = data.get("days_left")
    return days if isinstance(days, int | float) else None


def _expiring_summary(data: Data) -> str:
    if data.get("warning_days") == 0:
        return f"expired at {data.get('expire_time')}"
    days = _days_left(data) or 0.0
    left = f"{days:g} days" if days >= 1 else f"{days * 24:.1f} hours"
    return f"expires at {data.get('expire_time')}, in {left}"


_CHANGE: Final = {"enum": ["up", "down"]}
STALLED = Kind(
    "stalled",
    "job",
    "Synchronizing (or Migrating) while its delay grows with wall-clock time (or its "
    "checkpoint stands still) for `rules.stall_after` seconds; `down` when it moves again",
    _up_severity("critical"),
    {
        "change": _CHANGE,
        "stalled_seconds": {"type": "integer", "minimum": 0},
        "delay_seconds": {"type": ["integer", "null"], "minimum": 0},
        "checkpoint": NULLABLE_STR,
    },
    ("change", "stalled_seconds", "delay_seconds", "checkpoint"),
    _stalled_summary,
    {"change": "change", "stalled_seconds": "stalled_seconds", "delay_seconds": "delay_seconds"},
)
FLAPPING = Kind(
    "flapping",
    "job",
    "its status or delay level changed `rules.flap_threshold` times within "
    "`rules.flap_window` (its changes are then held back); `down` once steady for a "
    "quarter of the window",
    _up_severity("warning"),
    {
        "change": _CHANGE,
        "changes": {"type": "integer", "minimum": 1},
        "window_seconds": {"type": "number", "exclusiveMinimum": 0},
    },
    ("change", "changes", "window_seconds"),
    lambda data: (
        f"{data.get('changes')} changes within {data.get('window_seconds')}s"
        + (": changes held back" if data.get("change") == "up" else ", steady again")
    ),
    {"change": "change", "changes": "changes"},
)
REMINDER = Kind(
    "reminder",
    "job",
    "still in a critical condition `rules.repeat_interval` after it was last said, or "
    "still not ok when a silence or maintenance window that covered it ends",
    # The rule passes the condition's own severity; this is for foreign data.
    lambda data: "critical" if data.get("condition") in FAILURE_STATUSES else "warning",
    {
        "condition": {"type": "string", "minLength": 1},
        "since": {"type": "string", "format": "date-time"},
        "duration_seconds": {"type": "integer", "minimum": 0},
        "reason": {"enum": ["repeat", "silence_ended"]},
    },
    ("condition", "since", "duration_seconds", "reason"),
    lambda data: (
        f"still {data.get('condition')} since {data.get('since')} "
        f"({data.get('duration_seconds')}s; {data.get('reason')})"
    ),
    {"condition": "condition", "reason": "reason"},
)
EXPIRING = Kind(
    "expiring",
    "job",
    "a PrePaid job's ExpireTime is within one of `rules.expiry_warnings` days (once per "
    "warning), and once more when it has expired",
    lambda data: "critical" if (_days_left(data) or 0) <= 1 else "warning",
    {
        "expire_time": {"type": "string", "format": "date-time"},
        "days_left": {"type": "number"},
        "warning_days": {"type": "number", "minimum": 0},
    },
    ("expire_time", "days_left", "warning_days"),
    _expiring_summary,
    {"days_left": "days_left"},
)

# Every job kind, in the order they are listed (the schema, `tail --kind`).
ALL: Final[tuple[Kind, ...]] = (
    DISCOVERED,
    REMOVED,
    STATUS_CHANGED,
    DELAY_THRESHOLD_CROSSED,
    PRECHECK_FAILED,
    INIT_FAILED,
    STALLED,
    FLAPPING,
    REMINDER,
    EXPIRING,
)
