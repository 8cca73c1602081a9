"""The state bucket's entries: their keys, and how each becomes bytes and back. Pure.

With several replicas a shard's state lives in the state bucket (`cluster.state_bucket`),
one entry per job plus one per shard, so that whoever holds the shard next continues from
it; and each entry carries the events its last change caused until JetStream acknowledged
them (the outbox, kept per entry: a job's new state and its events are one write).

- `job.<shard>.<job id>.<direction>`: the job's state and rule memory, and its events not
  yet published; `gone` (no state) once the job was removed and `removed` waits;
- `shard.<shard>`: the shard's cycle count, its read health, the watcher events about it
  not yet published (`shard_acquired`, `source_unavailable`...);
- `own.<member>`: a member's own events not yet published (`started`, `heartbeat`...);
- `dead.<event id>`: an event JetStream refused for good, set aside with the reason.

Every name is one key token (`keys.encode`). A value is JSON, compressed (zlib) past a
kilobyte: a marker byte tells which. Events are kept as they will be published (id,
subject, payload) with the order they were saved in (`order`: milliseconds and a
counter), so a successor publishes them in about the order they were produced; within
an entry they are in order.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from watcher.cluster.keys import decode, encode, shard_name
from watcher.events import format_time
from watcher.rules import JobMemory, decode_memory
from watcher.snapshot import JobKey, JobState
from watcher.source_health import RegionHealth

__all__ = [
    "DEAD",
    "JOB",
    "OWN",
    "SHARD",
    "JobRecord",
    "OwnRecord",
    "Pending",
    "ShardRecord",
    "dead_key",
    "dead_value",
    "decode_job",
    "decode_own",
    "decode_shard",
    "encode_record",
    "job_key",
    "job_key_of",
    "jobs_of",
    "own_key",
    "shard_key",
]

JOB, SHARD, OWN, DEAD = "job", "shard", "own", "dead"
VERSION = 1
_COMPRESSED = b"\x00z"
_COMPRESS_PAST = 1024


@dataclass(frozen=True, slots=True)
class Pending:
    """An event saved and not yet acknowledged by JetStream, as it will be published."""

    id: str
    subject: str
    payload: bytes
    order: tuple[int, int] = (0, 0)  # (milliseconds when saved, a counter)

    def to_list(self) -> list[Any]:
        try:
            return [self.id, self.subject, self.payload.decode(), *self.order]
        except UnicodeDecodeError:  # not UTF-8 (never made so here): kept exactly
            return [self.id, self.subject, {"b64": base64.b64encode(self.payload).decode()}]

    @classmethod
    def from_list(cls, raw: Any) -> Pending:
        if not isinstance(raw, list) or len(raw) < 3:
            raise ValueError("not a pending event")
        payload = raw[2]
        data = (
            base64.b64decode(payload["b64"]) if isinstance(payload, dict) else str(payload).encode()
        )
        order = (int(raw[3]), int(raw[4])) if len(raw) >= 5 else (0, 0)
        return cls(str(raw[0]), str(raw[1]), data, order)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job's entry: its state and memory (None and None once gone), its events."""

    job: JobState | None
    memory: JobMemory | None
    pending: tuple[Pending, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": VERSION, "pending": [p.to_list() for p in self.pending]}
        if self.job is None:
            out["gone"] = True
        else:
            out["job"] = self.job.to_dict()
            out["memory"] = self.memory.to_dict() if self.memory else None
        return out


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """A shard's entry: its cycle count, its read health, its watcher events."""

    cycle: int = 0
    health: RegionHealth | None = None
    pending: tuple[Pending, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "cycle": self.cycle,
            "health": _health_dict(self.health),
            "pending": [p.to_list() for p in self.pending],
        }


@dataclass(frozen=True, slots=True)
class OwnRecord:
    """A member's entry: its own events not yet published."""

    member: str
    pending: tuple[Pending, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "member": self.member, "pending": [p.to_list() for p in self.pending]}


# --- keys -------------------------------------------------------------------------------


def shard_token(account: str, region: str) -> str:
    return encode(shard_name(account, region))


def job_key(key: JobKey) -> str:
    return (
        f"{JOB}.{shard_token(key.account, key.region)}.{encode(key.job_id)}.{encode(key.direction)}"
    )


def jobs_of(account: str, region: str) -> str:
    """The subject filter of a shard's job entries."""
    return f"{JOB}.{shard_token(account, region)}.>"


def shard_key(account: str, region: str) -> str:
    return f"{SHARD}.{shard_token(account, region)}"


def own_key(member: str) -> str:
    return f"{OWN}.{encode(member)}"


def dead_key(event_id: str) -> str:
    return f"{DEAD}.{encode(event_id)}"


def job_key_of(key: str) -> JobKey:
    """The job a `job.` key is about; ValueError for any other key."""
    kind, shard, job_id, direction = key.split(".")
    if kind != JOB:
        raise ValueError(f"{key!r} is not a job entry's key")
    account, _, region = decode(shard).rpartition("/")
    return JobKey(region, decode(job_id), decode(direction), account)


def member_of(key: str) -> str:
    kind, _, token = key.partition(".")
    if kind != OWN:
        raise ValueError(f"{key!r} is not a member's entry")
    return decode(token)


# --- values -----------------------------------------------------------------------------


def encode_record(record: JobRecord | ShardRecord | OwnRecord) -> bytes:
    raw = orjson.dumps(record.to_dict())
    if len(raw) <= _COMPRESS_PAST:
        return raw
    return _COMPRESSED + zlib.compress(raw, 1)


def _document(value: bytes) -> dict[str, Any]:
    if value.startswith(_COMPRESSED):
        try:
            value = zlib.decompress(value[len(_COMPRESSED) :])
        except zlib.error as exc:
            raise ValueError(f"not a compressed entry: {exc}") from None
    document = orjson.loads(value)
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise ValueError("not an entry of this version")
    return document


def _pending(document: dict[str, Any]) -> tuple[Pending, ...]:
    return tuple(Pending.from_list(raw) for raw in document.get("pending") or ())


def decode_job(value: bytes) -> JobRecord:
    """Raises ValueError (orjson's included), TypeError or KeyError for what is not one."""
    document = _document(value)
    if document.get("gone"):
        return JobRecord(None, None, _pending(document))
    memory = document.get("memory")
    if memory is not None and not isinstance(memory, dict):
        raise TypeError("rule memory is not a JSON object")
    return JobRecord(
        JobState.from_dict(document["job"]),
        (decode_memory(memory) or None) if memory else None,
        _pending(document),
    )


def decode_shard(value: bytes) -> ShardRecord:
    document = _document(value)
    return ShardRecord(
        int(document.get("cycle") or 0), _health(document.get("health")), _pending(document)
    )


def decode_own(value: bytes) -> OwnRecord:
    document = _document(value)
    return OwnRecord(str(document.get("member", "")), _pending(document))


def dead_value(pending: Pending, reason: str, at: str, shard: str | None) -> bytes:
    return orjson.dumps(
        {
            "v": VERSION,
            "id": pending.id,
            "subject": pending.subject,
            "payload": pending.to_list()[2],
            "reason": reason,
            "at": at,
            "shard": shard,
        }
    )


def _health_dict(health: RegionHealth | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {
        "failures": health.failures,
        "since": format_time(health.since) if health.since else None,
        "announced": health.announced,
        "last_code": health.last_code,
        "last_error": health.last_error,
    }


def _health(raw: Any) -> RegionHealth | None:
    if not isinstance(raw, dict):
        return None
    since = raw.get("since")
    return RegionHealth(
        failures=int(raw.get("failures") or 0),
        since=datetime.fromisoformat(since) if since else None,
        announced=raw.get("announced") is True,
        last_code=raw.get("last_code"),
        last_error=raw.get("last_error"),
    )
