"""Events: what the watcher says, as CloudEvents 1.0, and where it says it.

One `Event` is one change. Its wire form is a CloudEvents 1.0 envelope in structured JSON
mode (header `Content-Type: application/cloudevents+json`), published on

    <prefix>.job.<region>.<job_id>.<kind>     for job events
    <prefix>.watcher.<kind>                   for the watcher's own

with header `Nats-Msg-Id` equal to the event `id`, so JetStream's duplicate window
absorbs a re-publish after a crash. A region or id is escaped into one token
(`watcher.subjects`): two jobs never share a subject. Job events are created by the
pure `detect()`, which derives ids deterministically from the job, the kind and the
cycle; watcher events are created by the service with random ids.

The kinds themselves (severity rules, `data` schemas, summaries, log fields) are declared
in `watcher.kinds`; this module is the envelope around them: attributes, subjects, the
one encoding that goes into the outbox (`encode`), and the JSON Schema of the whole
(`dts-watcher schema`).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from watcher import fastjson
from watcher.kinds import (
    COMMON_JOB_DATA,
    JOB_KINDS,
    KINDS,
    SEVERITIES,
    TRUNCATED,
    WATCHER_KINDS,
    Kind,
    Severity,
    summary_detail,
)
from watcher.subjects import job_subject, subject_token, watcher_subject

if TYPE_CHECKING:
    from watcher.snapshot import JobState

SPECVERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/cloudevents+json"
DATA_CONTENT_TYPE: Final = "application/json"
SOURCE_ROOT: Final = "/dts-watcher"

__all__ = [
    "CONTENT_TYPE",
    "JOB_KINDS",
    "SEVERITIES",
    "WATCHER_KINDS",
    "Event",
    "Severity",
    "WithJob",
    "deterministic_id",
    "encode",
    "format_time",
    "json_schema",
    "parse_envelope",
    "subject_token",
    "summary",
    "watcher_event",
]

_ID_NAMESPACE: Final = uuid.UUID("6f1d3c52-8f2e-4a39-9a57-3f0b2d1c7e44")


@functools.lru_cache(maxsize=256)
def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as consumers expect (remembered: a cycle's events
    share the moment they were observed)."""
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
    # The silence (or `maintenance:<name>`) that covered the job when it was observed:
    # the envelope's extension attribute `silenced` (Contract v1.1; absent when None).
    silenced: str | None = None

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
        """The subject it is published on (`watcher.subjects` says how ids are escaped)."""
        if self.region is not None and self.job_id is not None:
            return job_subject(prefix, self.region, self.job_id, self.kind)
        return watcher_subject(prefix, self.kind)

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
        if self.silenced is not None:
            document["silenced"] = self.silenced
        return document

    def to_json(self) -> bytes:
        """The envelope as published (`encode`)."""
        return encode(self)

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
            if self.silenced is not None:
                fields["silenced"] = self.silenced
        else:
            fields["data"] = dict(self.data)  # small, and what an operator needs to see
        kind = KINDS.get(self.kind)
        for key, name in (kind.log_fields if kind is not None else {}).items():
            if key in self.data:
                fields[name] = self.data[key]
        return fields


def encode(event: Event) -> bytes:
    """The envelope as it goes into the outbox and onto the wire: compact UTF-8 JSON."""
    return fastjson.dumps(event.envelope())


def watcher_event(kind: str, severity: Severity, time: datetime, data: Mapping[str, Any]) -> Event:
    """An event about the watcher itself (random id: the service is not pure)."""
    return Event(kind=kind, severity=severity, time=time, data=data, id=str(uuid.uuid4()))


class WithJob(Mapping[str, Any]):
    """The data of an event that carries the whole normalized job (`discovered`,
    `removed`): the common fields, then `job` (`JobState.to_dict()`), made when read.

    The event is serialized once, when it goes into the outbox; until the cycle is over
    it is also kept. As a dict, `job` is ~6 KB a job, ~60 MB held through the first cycle
    of a 10,000-job account; as this, a reference to the (immutable) JobState, which the
    baseline holds anyway. It reads as the dict it stands for, equality included.
    """

    __slots__ = ("_fields", "_job")

    def __init__(self, fields: Mapping[str, Any], job: JobState) -> None:
        self._fields = fields
        self._job = job

    def __getitem__(self, key: str) -> Any:
        if key == "job":
            return self._job.to_dict()
        return self._fields[key]

    def __contains__(self, key: object) -> bool:
        return key == "job" or key in self._fields

    def __iter__(self) -> Iterator[str]:
        yield from self._fields
        yield "job"

    def __len__(self) -> int:
        return len(self._fields) + 1

    def __repr__(self) -> str:
        return repr(dict(self))


def parse_envelope(raw: bytes) -> dict[str, Any]:
    """Decode a received envelope (consumers, `tail`); raises ValueError if it is not one
    (JSON nested too deeply to decode included)."""
    try:
        document = json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(document, dict) or document.get("specversion") != SPECVERSION:
        raise ValueError("not a CloudEvents 1.0 structured-mode document")
    return document


def summary(document: Mapping[str, Any]) -> str:
    """One readable line for a received envelope (used by `tail` and the demo)."""
    data = document.get("data")
    data = data if isinstance(data, Mapping) else {}
    kind = str(document.get("type", "")).rsplit(".", 1)[-1]
    if "job_id" in data:
        where = f"{data.get('region')}/{data.get('job_id')}"
        if data.get("direction") not in (None, "Forward"):
            where += f"/{data['direction']}"
        if data.get("account") not in (None, "default"):
            where = f"{data['account']}:{where}"
    else:
        where = "watcher"
    name = f" ({data['job_name']})" if data.get("job_name") else ""
    detail = summary_detail(kind, data)
    time = str(document.get("time", ""))
    severity = str(document.get("severity", "info"))
    line = f"{time} {severity:<8} {kind:<24} {where}{name} {detail}".rstrip()
    silenced = document.get("silenced")
    return f"{line} [silenced: {silenced}]" if silenced else line


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) that every published envelope validates against."""
    variants = [_job_variant(KINDS[name]) for name in JOB_KINDS]
    variants += [_watcher_variant(KINDS[name]) for name in WATCHER_KINDS]
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
            # Optional extension (Contract v1.1): the silence, or maintenance:<name>,
            # covering the job; consumers that act on alerts may skip such events.
            "silenced": {"type": "string", "minLength": 1},
        },
        "additionalProperties": False,
        "oneOf": variants,
    }


def _job_variant(kind: Kind) -> dict[str, Any]:
    return {
        "title": kind.type,
        "description": kind.when,
        "properties": {
            "type": {"const": kind.type},
            "source": {"type": "string", "pattern": f"^{SOURCE_ROOT}/.+"},
            "data": {
                "type": "object",
                "required": [*COMMON_JOB_DATA, *kind.required],
                "properties": {**COMMON_JOB_DATA, **kind.properties, "truncated": TRUNCATED},
            },
        },
    }


def _watcher_variant(kind: Kind) -> dict[str, Any]:
    return {
        "title": kind.type,
        "description": kind.when,
        "properties": {
            "type": {"const": kind.type},
            "subject": {"const": "watcher"},
            "data": {
                "type": "object",
                "properties": {**kind.properties, "truncated": TRUNCATED},
            },
        },
    }
