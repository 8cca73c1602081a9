"""The normalized state of every DTS job at one instant.

Everything downstream (detection, events, the store) works on these types, never on raw
API payloads: `watcher.dts.models` is the only place that knows what DTS actually sends.

What identifies a job: a two-way synchronization instance has one `SynchronizationJobId`
and two jobs, one per `SynchronizationDirection` (Forward and Reverse), each with its own
status and delay. Job ids are unique per region, so a job is keyed by
(region, job id, direction).

The types are frozen dataclasses with slots: cheap to build by the ten thousand, hashable
where it matters, and comparable with `==` so detection can skip unchanged jobs quickly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, NamedTuple

from watcher import statuses
from watcher.shards import DEFAULT_ACCOUNT, RegionOutcome, Shard, shard_label
from watcher.statuses import *  # noqa: F403 - the statuses are part of the model's vocabulary

__all__ = [
    "BODY_FIELDS",
    "DEFAULT_ACCOUNT",
    "Endpoint",
    "ErrorDetail",
    "InitStage",
    "JOB_TYPES",
    "JobKey",
    "JobState",
    "Precheck",
    "PrecheckItem",
    "RegionOutcome",
    "RetryState",
    "Shard",
    "Snapshot",
    "SyncObject",
    "shard_label",
    *statuses.__all__,
]

# What kind of DTS job: synchronization (the legacy listing shows only these), migration,
# or change tracking (subscription); DescribeDtsJobs lists each type on request.
JOB_TYPES = ("sync", "migration", "subscribe")


def _plain_json(text: str) -> bool:
    """Whether `json.dumps` writes `text` as itself between quotes: printable ASCII
    without a quote or a backslash."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


class JobKey(NamedTuple):
    """What identifies a job: its account, region, id and direction (a two-way
    synchronization is two jobs sharing an id)."""

    region: str
    job_id: str
    direction: str
    account: str = DEFAULT_ACCOUNT

    def __str__(self) -> str:
        """For people: `region/id/direction`, the account first when not the default."""
        where = f"{self.region}/{self.job_id}/{self.direction}"
        return where if self.account == DEFAULT_ACCOUNT else f"{self.account}:{where}"

    def encode(self) -> str:
        """A text that `decode` turns back into this key, whatever the parts hold (the
        store's row key, the seed of event ids): `json.dumps` of the four parts, written
        out directly when none needs escaping (a storm encodes 10,000 keys)."""
        account, region, job_id, direction = self.account, self.region, self.job_id, self.direction
        if _plain_json(account + region + job_id + direction):
            return f'["{account}", "{region}", "{job_id}", "{direction}"]'
        return json.dumps([account, region, job_id, direction])

    @classmethod
    def decode(cls, text: str) -> JobKey:
        """Inverse of `encode`; raises ValueError for anything else."""
        parts = json.loads(text)
        if not (
            isinstance(parts, list) and len(parts) == 4 and all(isinstance(p, str) for p in parts)
        ):
            raise ValueError(f"not a job key: {text[:80]!r}")
        account, region, job_id, direction = parts
        return cls(region, job_id, direction, account)

    @classmethod
    def parse_legacy(cls, text: str) -> JobKey:
        """The `region/id/direction` form state schemas 1 and 2 keyed rows by (neither
        region nor direction held a "/" then; an id might: split from both ends)."""
        region, rest = text.split("/", 1)
        job_id, direction = rest.rsplit("/", 1)
        return cls(region, job_id, direction)


@dataclass(frozen=True, slots=True)
class PrecheckItem:
    item_name: str
    status: str  # "Success", "Failed", or whatever DTS said
    error_message: str | None = None
    repair_method: str | None = None

    @property
    def failed(self) -> bool:
        return self.status.lower() == "failed"


@dataclass(frozen=True, slots=True)
class Precheck:
    status: str | None
    percent: float | None
    items: tuple[PrecheckItem, ...] = ()

    @property
    def failed_items(self) -> tuple[PrecheckItem, ...]:
        return tuple(item for item in self.items if item.failed)


@dataclass(frozen=True, slots=True)
class InitStage:
    """Schema ("structure") or full-data initialization."""

    status: str | None  # NotStarted, Migrating, Failed, Finished (as DTS sends them)
    percent: float | None = None
    progress: int | None = None
    error_message: str | None = None

    @property
    def failed(self) -> bool:
        return (self.status or "").lower() == "failed"


@dataclass(frozen=True, slots=True)
class RetryState:
    """DescribeDtsJobs' RetryState: DTS retrying a job after a fault."""

    retrying: bool | None = None
    count: int | None = None  # RetryCount
    retry_seconds: int | None = None  # RetryTime: time spent retrying so far
    max_retry_seconds: int | None = None  # MaxRetryTime
    target: str | None = None  # RetryTarget: srcDB, destDB, inner_module
    module: str | None = None  # Module
    error_message: str | None = None  # ErrMessage


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One of DescribeDtsJobs' ErrorDetails: a code and a help link for an operator."""

    error_code: str | None = None
    help_url: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    instance_id: str | None = None
    instance_type: str | None = None
    engine_name: str | None = None
    ip: str | None = None
    port: int | None = None
    user_name: str | None = None


@dataclass(frozen=True, slots=True)
class SyncObject:
    schema_name: str | None
    new_schema_name: str | None = None
    table_includes: tuple[str, ...] = ()
    table_excludes: tuple[str, ...] = ()


# The parts of a job that weigh the most and seldom move: its precheck (the sixteen items
# with their messages are half of a typical job's 3 KB of JSON), endpoints, tags, objects
# and times. The store writes them apart and only when they changed, so a storm that
# moves 10,000 statuses writes a tenth of the bytes.
BODY_FIELDS = (
    "precheck",
    "source",
    "destination",
    "tags",
    "objects",
    "create_time",
    "job_create_time",
    "instance_create_time",
    "expire_time",
)


@dataclass(frozen=True, slots=True)
class JobState:
    region: str
    job_id: str
    direction: str
    job_name: str
    status: str
    account: str = DEFAULT_ACCOUNT
    job_type: str = "sync"
    error_message: str | None = None
    delay_seconds: int | None = None
    # Where replication has got to, as DTS reports it (DescribeDtsJobs' Checkpoint, a
    # unix time in seconds); None where the API does not say.
    checkpoint: str | None = None
    # DescribeDtsJobs' DtsInstanceID (the legacy listing's SynchronizationJobId is the
    # instance id itself, so legacy jobs leave this None: see `detect.adopt`).
    instance_id: str | None = None
    retry: RetryState | None = None
    error_details: tuple[ErrorDetail, ...] = ()
    pay_type: str | None = None
    job_class: str | None = None
    structure_initialization: bool | None = None
    data_initialization: bool | None = None
    precheck: Precheck | None = None
    structure_init: InitStage | None = None
    data_init: InitStage | None = None
    source: Endpoint | None = None
    destination: Endpoint | None = None
    rps: float | None = None
    flow_mbps: float | None = None
    tags: tuple[tuple[str, str], ...] = ()
    objects: tuple[SyncObject, ...] = ()
    create_time: datetime | None = None
    job_create_time: datetime | None = None
    instance_create_time: datetime | None = None
    expire_time: datetime | None = None

    @property
    def key(self) -> JobKey:
        return JobKey(self.region, self.job_id, self.direction, self.account)

    @property
    def shard_label(self) -> str:
        """The label of the shard that lists this job (see `Shard`)."""
        return shard_label(self.account, self.region)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stable keys; used by `snapshot`, events and the store.

        The same as `dataclasses.asdict` with tags as an object and times as RFC 3339
        strings, field for field and in field order, but written out: asdict's generic
        recursion (and deep copies) cost ~150 µs a job, and a storm of 10,000 changed
        jobs serializes every one of them (unit tests hold the two forms equal).
        """
        merged = self.head_dict()
        merged.update(self.body_dict())
        return {name: merged[name] for name in _FIELD_ORDER}

    def head_dict(self) -> dict[str, Any]:
        """`to_dict` without the `BODY_FIELDS`: what moves from one poll to the next."""
        return {
            "region": self.region,
            "job_id": self.job_id,
            "direction": self.direction,
            "job_name": self.job_name,
            "status": self.status,
            "account": self.account,
            "job_type": self.job_type,
            "error_message": self.error_message,
            "delay_seconds": self.delay_seconds,
            "checkpoint": self.checkpoint,
            "instance_id": self.instance_id,
            "retry": _retry_dict(self.retry),
            "error_details": tuple(
                {"error_code": d.error_code, "help_url": d.help_url} for d in self.error_details
            ),
            "pay_type": self.pay_type,
            "job_class": self.job_class,
            "structure_initialization": self.structure_initialization,
            "data_initialization": self.data_initialization,
            "structure_init": _stage_dict(self.structure_init),
            "data_init": _stage_dict(self.data_init),
            "rps": self.rps,
            "flow_mbps": self.flow_mbps,
        }

    def body_dict(self) -> dict[str, Any]:
        """`to_dict` of the `BODY_FIELDS` alone."""
        precheck = self.precheck
        return {
            "precheck": None
            if precheck is None
            else {
                "status": precheck.status,
                "percent": precheck.percent,
                "items": tuple(
                    [
                        {
                            "item_name": item.item_name,
                            "status": item.status,
                            "error_message": item.error_message,
                            "repair_method": item.repair_method,
                        }
                        for item in precheck.items
                    ]
                ),
            },
            "source": _endpoint_dict(self.source),
            "destination": _endpoint_dict(self.destination),
            "tags": {k: v for k, v in self.tags},
            "objects": tuple(
                {
                    "schema_name": o.schema_name,
                    "new_schema_name": o.new_schema_name,
                    "table_includes": o.table_includes,
                    "table_excludes": o.table_excludes,
                }
                for o in self.objects
            ),
            "create_time": _rfc3339(self.create_time),
            "job_create_time": _rfc3339(self.job_create_time),
            "instance_create_time": _rfc3339(self.instance_create_time),
            "expire_time": _rfc3339(self.expire_time),
        }

    def same_body(self, other: JobState) -> bool:
        """Whether the `BODY_FIELDS` of the two jobs are equal (by identity first: the
        parser shares what did not change, see `sharing_body`)."""
        for name in BODY_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not theirs and mine != theirs:
                return False
        return True

    def sharing_body(self, previous: JobState) -> JobState:
        """This job, holding `previous`'s body objects where they are equal to its own.

        The parser calls it for a record that changed since the last listing (a status,
        a delay): what did not change is then the very same objects as before, which the
        store recognises by identity instead of comparing sixteen precheck items again.
        """
        shared = {
            name: mine
            for name in _SHAREABLE
            if (mine := getattr(previous, name)) is not (theirs := getattr(self, name))
            and mine == theirs
        }
        return replace(self, **shared) if shared else self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobState:
        """Inverse of `to_dict` (the store reads jobs back with it)."""
        d = dict(data)
        for name in ("create_time", "job_create_time", "instance_create_time", "expire_time"):
            d[name] = datetime.fromisoformat(d[name]) if d.get(name) else None
        if d.get("precheck") is not None:
            p = d["precheck"]
            d["precheck"] = Precheck(
                status=p.get("status"),
                percent=p.get("percent"),
                items=tuple(PrecheckItem(**item) for item in p.get("items", ())),
            )
        for name in ("structure_init", "data_init"):
            if d.get(name) is not None:
                d[name] = InitStage(**d[name])
        for name in ("source", "destination"):
            if d.get(name) is not None:
                d[name] = Endpoint(**d[name])
        if d.get("retry") is not None:
            d["retry"] = RetryState(**d["retry"])
        d["error_details"] = tuple(ErrorDetail(**e) for e in d.get("error_details") or ())
        d["tags"] = tuple(sorted((d.get("tags") or {}).items()))
        d["objects"] = tuple(
            SyncObject(
                schema_name=o.get("schema_name"),
                new_schema_name=o.get("new_schema_name"),
                table_includes=tuple(o.get("table_includes", ())),
                table_excludes=tuple(o.get("table_excludes", ())),
            )
            for o in d.get("objects") or ()
        )
        return cls(**d)


_FIELD_ORDER = tuple(f.name for f in fields(JobState))
_SHAREABLE = ("precheck", "objects", "source", "destination", "tags")


def _stage_dict(stage: InitStage | None) -> dict[str, Any] | None:
    if stage is None:
        return None
    return {
        "status": stage.status,
        "percent": stage.percent,
        "progress": stage.progress,
        "error_message": stage.error_message,
    }


def _retry_dict(retry: RetryState | None) -> dict[str, Any] | None:
    if retry is None:
        return None
    return {
        "retrying": retry.retrying,
        "count": retry.count,
        "retry_seconds": retry.retry_seconds,
        "max_retry_seconds": retry.max_retry_seconds,
        "target": retry.target,
        "module": retry.module,
        "error_message": retry.error_message,
    }


def _endpoint_dict(endpoint: Endpoint | None) -> dict[str, Any] | None:
    if endpoint is None:
        return None
    return {
        "instance_id": endpoint.instance_id,
        "instance_type": endpoint.instance_type,
        "engine_name": endpoint.engine_name,
        "ip": endpoint.ip,
        "port": endpoint.port,
        "user_name": endpoint.user_name,
    }


def _rfc3339(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All jobs seen in one fetch, keyed by `JobKey`, plus how each shard went (keyed by
    its label: the region for the default account, `account/region` otherwise).

    Jobs of an incomplete shard are whatever was read before the failure and must not be
    trusted for absence: only `complete_regions` (labels) can prove a job is gone.
    """

    jobs: Mapping[JobKey, JobState]
    regions: Mapping[str, RegionOutcome] = field(default_factory=dict)
    taken_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return bool(self.regions) and all(r.complete for r in self.regions.values())

    @property
    def complete_regions(self) -> frozenset[str]:
        return frozenset(name for name, r in self.regions.items() if r.complete)

    @property
    def absence_regions(self) -> frozenset[str]:
        """Shards (labels) whose listing can prove a job gone (see `RegionOutcome`)."""
        return frozenset(name for name, r in self.regions.items() if r.proves_absence)

    @property
    def incomplete_reasons(self) -> dict[str, str]:
        return {name: r.error for name, r in self.regions.items() if r.error is not None}

    def __iter__(self) -> Iterator[JobState]:
        return iter(self.jobs.values())

    def __len__(self) -> int:
        return len(self.jobs)

    @classmethod
    def of(
        cls,
        jobs: Iterable[JobState],
        regions: Iterable[RegionOutcome] = (),
        taken_at: datetime | None = None,
    ) -> Snapshot:
        return cls(
            jobs={job.key: job for job in jobs},
            regions={r.label: r for r in regions},
            taken_at=taken_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "taken_at": _rfc3339(self.taken_at),
            "regions": {
                name: {"complete": r.complete, "error": r.error, "pages": r.pages}
                | ({} if r.account == DEFAULT_ACCOUNT else r.where())
                for name, r in sorted(self.regions.items())
            },
            "jobs": [job.to_dict() for _, job in sorted(self.jobs.items())],
        }
