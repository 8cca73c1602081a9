"""What a kind is (`Kind`), and what every kind's schema and summary share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

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
NULLABLE_STR: Final = {"type": ["string", "null"]}
NULLABLE_INT: Final = {"type": ["integer", "null"]}
JOB_OBJECT: Final = {"type": "object", "required": ["job_id", "region", "status"]}
TIME_OR_NULL: Final = {"type": ["string", "null"], "format": "date-time"}
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


def fields_summary(data: Data) -> str:
    """Whatever the data holds, `key=value` each, every value whole but shortened."""
    return " ".join(f"{key}={shorten(value)}" for key, value in sorted(data.items()))
