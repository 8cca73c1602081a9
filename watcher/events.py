"""Events: what the watcher says, as CloudEvents 1.0, and where it says it.

One `Event` is one change. Its wire form is a CloudEvents 1.0 envelope in structured JSON
mode (header `Content-Type: application/cloudevents+json`), published on

    <prefix>.job.<region>.<job_id>.<kind>     for job events
    <prefix>.watcher.<kind>                   for the watcher's own

with header `Nats-Msg-Id` equal to the event `id`, so JetStream's duplicate window
absorbs a re-publish after a crash. Job events are created by the pure `detect()`, which
derives ids deterministically from the job, the kind and the cycle; watcher events are
created by the service with random ids.

This module is the one place that knows the contract (DESIGN.md): kinds, severities,
subjects, the envelope and its JSON Schema (`dts-watcher schema`).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

SPECVERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/cloudevents+json"
DATA_CONTENT_TYPE: Final = "application/json"
SOURCE_ROOT: Final = "/dts-watcher"

Severity = Literal["info", "warning", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "critical")

# Job event kinds (DESIGN.md's table) and the watcher's own.
DISCOVERED: Final = "discovered"
REMOVED: Final = "removed"
STATUS_CHANGED: Final = "status_changed"
DELAY_THRESHOLD_CROSSED: Final = "delay_threshold_crossed"
PRECHECK_FAILED: Final = "precheck_failed"
INIT_FAILED: Final = "init_failed"
JOB_KINDS: Final = (
    DISCOVERED,
    REMOVED,
    STATUS_CHANGED,
    DELAY_THRESHOLD_CROSSED,
    PRECHECK_FAILED,
    INIT_FAILED,
)
WATCHER_KINDS: Final = (
    "started",
    "stopped",
    "heartbeat",
    "cycle_incomplete",
    "source_unavailable",
    "source_recovered",
)

_ID_NAMESPACE: Final = uuid.UUID("6f1d3c52-8f2e-4a39-9a57-3f0b2d1c7e44")
_UNSAFE_TOKEN = re.compile(r"[\s.*>]")


def subject_token(text: str) -> str:
    """A value made safe as one NATS subject token (no dots, wildcards or spaces)."""
    if text.isalnum():  # DTS job ids: nothing to replace, and a storm has 10,000 of them
        return text
    return _UNSAFE_TOKEN.sub("_", text) or "_"


@functools.lru_cache(maxsize=256)
def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as consumers expect.

    Remembered: the events of one cycle share the moment they were observed, and a storm
    formats it 10,000 times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def deterministic_id(*parts: str) -> str:
    """A UUID-shaped id derived from its inputs (detect() may not use randomness)."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    severity: Severity
    time: datetime
    data: Mapping[str, Any]
    id: str
    region: str | None = None  # None for watcher events
    job_id: str | None = None  # None for watcher events
    extra: Mapping[str, Any] = field(default_factory=dict)  # reserved for extensions

    @property
    def is_job_event(self) -> bool:
        return self.job_id is not None

    @property
    def type(self) -> str:
        return f"dts.{'job' if self.is_job_event else 'watcher'}.{self.kind}"

    @property
    def source(self) -> str:
        if self.region is None:
            return SOURCE_ROOT
        return f"{SOURCE_ROOT}/{self.region}"

    def nats_subject(self, prefix: str) -> str:
        if self.is_job_event:
            assert self.region is not None and self.job_id is not None
            return (
                f"{prefix}.job.{subject_token(self.region)}."
                f"{subject_token(self.job_id)}.{self.kind}"
            )
        return f"{prefix}.watcher.{self.kind}"

    def envelope(self) -> dict[str, Any]:
        """The CloudEvents 1.0 structured-mode document."""
        document: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.job_id if self.job_id is not None else "watcher",
            "time": format_time(self.time),
            "datacontenttype": DATA_CONTENT_TYPE,
            "severity": self.severity,
            "data": dict(self.data),
        }
        return document

    def to_json(self) -> bytes:
        return json.dumps(self.envelope(), ensure_ascii=False, separators=(",", ":")).encode()

    def headers(self) -> dict[str, str]:
        return {"Nats-Msg-Id": self.id, "Content-Type": CONTENT_TYPE}

    def log_fields(self) -> dict[str, Any]:
        """What the one JSON log line per event carries."""
        fields: dict[str, Any] = {
            "event_id": self.id,
            "event_type": self.type,
            "severity": self.severity,
            "time_observed": format_time(self.time),
        }
        if self.is_job_event:
            fields.update(
                region=self.region,
                job_id=self.job_id,
                job_name=self.data.get("job_name"),
                direction=self.data.get("direction"),
                status=self.data.get("status"),
            )
        else:
            fields["data"] = dict(self.data)  # small, and what an operator needs to see
        # "level" would clash with the log line's own level: delay levels are renamed.
        renamed = {"level": "delay_level", "previous_level": "previous_delay_level"}
        for key in ("previous_status", "level", "previous_level", "delay_seconds", "stage"):
            if key in self.data:
                fields[renamed.get(key, key)] = self.data[key]
        return fields


def watcher_event(kind: str, severity: Severity, time: datetime, data: Mapping[str, Any]) -> Event:
    """An event about the watcher itself (random id: the service is not pure)."""
    return Event(kind=kind, severity=severity, time=time, data=data, id=str(uuid.uuid4()))


def parse_envelope(raw: bytes) -> dict[str, Any]:
    """Decode a received envelope (consumers, `tail`); raises ValueError if it is not one."""
    document = json.loads(raw)
    if not isinstance(document, dict) or document.get("specversion") != SPECVERSION:
        raise ValueError("not a CloudEvents 1.0 structured-mode document")
    return document


def summary(document: Mapping[str, Any]) -> str:
    """One readable line for a received envelope (used by `tail` and the demo)."""
    data = document.get("data") or {}
    kind = str(document.get("type", "")).rsplit(".", 1)[-1]
    where = (
        f"{data.get('region')}/{data.get('job_id')}"
        + (f"/{data['direction']}" if data.get("direction") not in (None, "Forward") else "")
        if "job_id" in data
        else "watcher"
    )
    name = f" ({data['job_name']})" if data.get("job_name") else ""
    detail = ""
    if kind == STATUS_CHANGED:
        detail = f"{data.get('previous_status')} -> {data.get('status')}"
        if data.get("error_message") and data.get("status") in {
            "Failed",
            "PrecheckFailed",
            "InitializeFailed",
        }:
            detail += f": {data['error_message']}"
    elif kind == DELAY_THRESHOLD_CROSSED:
        detail = (
            f"{data.get('previous_level')} -> {data.get('level')} "
            f"(delay {data.get('delay_seconds')}s, threshold {data.get('threshold_seconds')}s)"
        )
    elif kind == PRECHECK_FAILED:
        items = data.get("failed_items") or []
        detail = ", ".join(
            f"{i.get('item_name')}: {i.get('error_message')} [repair: {i.get('repair_method')}]"
            for i in items
        )
    elif kind == INIT_FAILED:
        detail = f"{data.get('stage')} initialization: {data.get('error_message')}"
    elif kind in (DISCOVERED, REMOVED):
        detail = f"status {data.get('status')}"
    else:
        detail = json.dumps(data, ensure_ascii=False, sort_keys=True)[:200]
    time = str(document.get("time", ""))
    severity = str(document.get("severity", "info"))
    return f"{time} {severity:<8} {kind:<24} {where}{name} {detail}".rstrip()


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) that every published envelope validates against."""
    nullable_str = {"type": ["string", "null"]}
    common = {
        "job_id": {"type": "string", "minLength": 1},
        "job_name": {"type": "string"},
        "region": {"type": "string", "minLength": 1},
        "direction": {"type": "string"},
        "status": {"type": "string"},
    }
    job_object = {"type": "object", "required": ["job_id", "region", "status"]}
    per_kind: dict[str, tuple[dict[str, Any], list[str]]] = {
        DISCOVERED: ({"job": job_object}, ["job"]),
        REMOVED: ({"job": job_object}, ["job"]),
        STATUS_CHANGED: (
            {
                "previous_status": nullable_str,
                "error_message": nullable_str,
                "recovered_from": {"type": "string"},
            },
            ["previous_status", "error_message"],
        ),
        DELAY_THRESHOLD_CROSSED: (
            {
                "level": {"type": "string"},
                "previous_level": {"type": "string"},
                "delay_seconds": {"type": "integer", "minimum": 0},
                "threshold_seconds": {"type": "number", "exclusiveMinimum": 0},
                "change": {"enum": ["up", "down"]},
            },
            ["level", "previous_level", "delay_seconds", "threshold_seconds"],
        ),
        PRECHECK_FAILED: (
            {
                "failed_items": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["item_name", "error_message", "repair_method"],
                        "properties": {
                            "item_name": {"type": "string"},
                            "error_message": nullable_str,
                            "repair_method": nullable_str,
                        },
                    },
                }
            },
            ["failed_items"],
        ),
        INIT_FAILED: (
            {"stage": {"enum": ["structure", "data"]}, "error_message": nullable_str},
            ["stage", "error_message"],
        ),
    }
    variants: list[dict[str, Any]] = []
    for kind, (properties, required) in per_kind.items():
        variants.append(
            {
                "title": f"dts.job.{kind}",
                "properties": {
                    "type": {"const": f"dts.job.{kind}"},
                    "source": {"type": "string", "pattern": f"^{SOURCE_ROOT}/.+"},
                    "data": {
                        "type": "object",
                        "required": [*common, *required],
                        "properties": {**common, **properties},
                    },
                },
            }
        )
    variants.append(
        {
            "title": "dts.watcher.*",
            "properties": {
                "type": {"enum": [f"dts.watcher.{kind}" for kind in WATCHER_KINDS]},
                "subject": {"const": "watcher"},
                "data": {"type": "object"},
            },
        }
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/dts-watcher/dts-watcher/schema/event-v1.json",
        "title": "dts-watcher event (CloudEvents 1.0, structured JSON mode)",
        "type": "object",
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "severity",
            "data",
        ],
        "properties": {
            "specversion": {"const": SPECVERSION},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "type": {"type": "string", "pattern": r"^dts\.(job|watcher)\.[a-z_]+$"},
            "subject": {"type": "string", "minLength": 1},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": DATA_CONTENT_TYPE},
            "severity": {"enum": list(SEVERITIES)},
            "data": {"type": "object"},
        },
        "additionalProperties": False,
        "oneOf": variants,
    }
