"""How a scenario describes one job: the vocabulary, `JobSpec` and its parts, `JobKey`.

These are pydantic models with `extra="forbid"`, so a typo in a scenario file is an error
that names the file and the field, never a silently ignored key. Statuses are accepted in
any letter case and stored in DTS's own spelling (`watcher.snapshot.known_status`, the
one table of those spellings). `ScenarioError` and `describe_validation_error` live here
because every other part of the simulator raises or formats them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from watcher.settings.alerting import parse_duration
from watcher.snapshot import KNOWN_STATUSES, known_status

__all__ = [
    "CHECK_STATUSES",
    "DEFAULT_PRECHECK_ITEMS",
    "JOB_TYPES",
    "PRECHECK_STATUSES",
    "QUIRKS",
    "STAGE_STATUSES",
    "EndpointSpec",
    "ErrorDetailSpec",
    "JobKey",
    "JobSpec",
    "ObjectSpec",
    "PrecheckItemSpec",
    "PrecheckSpec",
    "Quirk",
    "RetrySpec",
    "ScenarioError",
    "Spec",
    "StageSpec",
    "choose",
    "describe_validation_error",
    "normalize_job_status",
    "parse_job_key",
    "signed_seconds",
]


class ScenarioError(ValueError):
    """A scenario file (or a change made at run time) that cannot be used, and why."""


def describe_validation_error(exc: ValidationError) -> str:
    """pydantic's errors as one line a person can act on: `jobs[2].status: unknown ...`."""
    parts = []
    for error in exc.errors():
        where = ""
        for piece in error["loc"]:
            where += f"[{piece}]" if isinstance(piece, int) else (f".{piece}" if where else piece)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

Quirk = Literal[
    "lowercase_status",  # "Status": "synchronizing", as in the reference's own sample
    "numbers_as_json",  # Delay, Percent, Progress, RPS, FLOW, Port as JSON numbers
    "strings_for_bools",  # "DataInitialization": "true" instead of true
    "omit_precheck",  # no PrecheckStatus object at all
    "omit_performance",  # no Performance object at all
    "empty_strings",  # absent optional values sent as "" instead of being left out
    "wrapped_lists",  # XML-style wrappers: {"Detail": [...]}, {"SynchronizationInstance": [...]}
    "lowercase_keys",  # "synchronizationJobId" instead of "SynchronizationJobId"
    "extra_fields",  # fields the reference does not document
]
QUIRKS: tuple[str, ...] = get_args(Quirk)

STAGE_STATUSES = ("NotStarted", "Migrating", "Failed", "Finished")
PRECHECK_STATUSES = ("NotStarted", "Prechecking", "Success", "Failed", "Finished")
CHECK_STATUSES = ("Success", "Failed", "Warning")

DEFAULT_PRECHECK_ITEMS: tuple[str, ...] = (
    "CHECK_CONN_SRC",
    "CHECK_AUTH_SRC",
    "CHECK_CONN_DEST",
    "CHECK_AUTH_DEST",
    "CHECK_BINLOG_ON",
    "CHECK_BINLOG_MODE",
    "CHECK_BINLOG_ROW_IMAGE",
    "CHECK_SERVER_ID",
    "CHECK_BINLOG_EXIST",
    "CHECK_ENGINE",
    "CHECK_MYSQL_PASSOWRD_FORMAT",  # sic: DTS's own spelling
    "CHECK_SRC",
    "CHECK_SAME_OBJ",
    "CHECK_SQL_MODE",
    "CHECK_SAME_USER",
    "CHECK_TOPOLOGY",
)


def signed_seconds(text: str) -> float:
    """`36h`, `90s`, `2d`, `-1h` (in the past): seconds, or ValueError."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    try:
        return sign * parse_duration(value.removeprefix("-"))
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 36h, 90s, 2d or -1h") from None


def choose(value: Any, allowed: Iterable[str], what: str) -> str:
    """`value` in the spelling of `allowed`, matched case-insensitively."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    options = list(allowed)
    for option in options:
        if option.lower() == value.strip().lower():
            return option
    raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(options)}")


def normalize_job_status(value: Any) -> str:
    """A job status in DTS's spelling (any letter case accepted), or ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"status must be a string, got {type(value).__name__}")
    found = known_status(value)
    if found is None:
        raise ValueError(f"unknown status {value!r}; expected one of {', '.join(KNOWN_STATUSES)}")
    return found


class Spec(BaseModel):
    """The base of every scenario model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------


class PrecheckItemSpec(Spec):
    name: str
    status: str = "Success"
    error_message: str | None = None
    repair_method: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return choose(v, CHECK_STATUSES, "precheck item status")


class PrecheckSpec(Spec):
    """PrecheckStatus. `items` left out: the 16 usual checks, each with status Success."""

    status: str = "Success"
    percent: float | None = None
    items: list[PrecheckItemSpec] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return choose(v, PRECHECK_STATUSES, "precheck status")


class StageSpec(Spec):
    """StructureInitializationStatus or DataInitializationStatus."""

    status: str
    percent: float | None = None
    progress: int | None = None
    error_message: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return choose(v, STAGE_STATUSES, "initialization status")


class EndpointSpec(Spec):
    """SourceEndpoint / DestinationEndpoint; fields left out get plausible values."""

    instance_id: str | None = None
    engine: str | None = None
    instance_type: str | None = None
    ip: str | None = None
    port: int | None = None
    user: str | None = None


class ObjectSpec(Spec):
    """One SynchronizationObjects entry: a schema, its new name, included/excluded tables."""

    schema_name: str = Field(alias="schema")
    new_schema: str | None = None
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class RetrySpec(Spec):
    """DescribeDtsJobs' RetryState of a job DTS is retrying."""

    count: int = Field(1, ge=0)
    seconds: int = Field(60, ge=0)  # RetryTime: spent retrying so far
    max_seconds: int = Field(43200, ge=0)  # MaxRetryTime
    target: str = "srcDB"  # srcDB, destDB or inner_module
    module: str = "reader"
    error_message: str = "DTS-30011: Connect to source database failed: connection refused"


class ErrorDetailSpec(Spec):
    """One of DescribeDtsJobs' ErrorDetails."""

    code: str
    help_url: str | None = None


JOB_TYPES = ("sync", "migration", "subscribe")


class JobSpec(Spec):
    """One DTS job as a scenario describes it.

    `id` is what the legacy listing calls SynchronizationJobId: the id of the DTS
    *instance*. DescribeDtsJobs shows it as DtsInstanceID and the job under its own
    `DtsJobId` (`job_id`, default: the id without its "dts" prefix, plus "r" for a
    Reverse half). A two-way instance is two JobSpecs with the same `id`, one per
    `direction`. Fields left out get realistic values derived from the id and the status
    (see `job_to_api`). The legacy listing shows `sync` jobs only.
    """

    id: str = Field(min_length=1)
    region: str = Field(min_length=1)
    account: str = Field("default", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    job_type: str = "sync"
    job_id: str | None = None
    retry: RetrySpec | None = None
    error_details: list[ErrorDetailSpec] = Field(default_factory=list)
    checkpoint: int | None = None
    name: str | None = None
    direction: str = "Forward"
    status: str = "Synchronizing"
    delay: int = Field(0, ge=0)
    error_message: str | None = None
    pay_type: str = "PostPaid"
    job_class: str = "medium"
    resource_group: str | None = None
    created: datetime | None = None
    expire_time: datetime | None = None
    # Relative to the simulator's clock when the job is added or the step sets it: a
    # duration ("36h", "-1h" for one that expired an hour ago); becomes expire_time then.
    expires_in: str | None = None
    # Not moving: the delay served grows with the simulator's clock, one second a second,
    # from when it was set (delay + seconds since); false (or "") and it moves again.
    stalled: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    precheck: PrecheckSpec | None = None
    structure_initialization: bool = True
    data_initialization: bool = True
    structure_init: StageSpec | None = None
    data_init: StageSpec | None = None
    source: EndpointSpec | None = None
    destination: EndpointSpec | None = None
    objects: list[ObjectSpec] | None = None
    rps: float | None = None
    flow: float | None = None
    quirks: list[Quirk] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if "/" in v or v != v.strip():
            raise ValueError(f"job id {v!r} must not contain '/' or surrounding spaces")
        return v

    @field_validator("job_type", mode="before")
    @classmethod
    def _job_type(cls, v: Any) -> str:
        return choose(v, JOB_TYPES, "job type")

    @property
    def dts_job_id(self) -> str:
        """The job's DtsJobId in DescribeDtsJobs."""
        if self.job_id is not None:
            return self.job_id
        base = self.id[3:] if self.id.startswith("dts") and len(self.id) > 3 else f"{self.id}j"
        return base + ("r" if self.direction == "Reverse" else "")

    @field_validator("direction", mode="before")
    @classmethod
    def _direction(cls, v: Any) -> str:
        return choose(v, ("Forward", "Reverse"), "direction")

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return normalize_job_status(v)

    @field_validator("pay_type", mode="before")
    @classmethod
    def _pay_type(cls, v: Any) -> str:
        return choose(v, ("PrePaid", "PostPaid"), "pay_type")

    @field_validator("expires_in")
    @classmethod
    def _expires_in(cls, v: str | None) -> str | None:
        if v is not None:
            signed_seconds(v)
        return v

    @field_validator("created", "expire_time")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)  # TOML local datetimes are read as UTC
        return v

    @property
    def key(self) -> JobKey:
        return JobKey(self.id, self.direction)


class JobKey(NamedTuple):
    """A job within a scenario: its id and direction ("id" or "id/Reverse" in files)."""

    id: str
    direction: str

    def __str__(self) -> str:
        return self.id if self.direction == "Forward" else f"{self.id}/{self.direction}"


def parse_job_key(text: str) -> JobKey:
    """ "dtsabc" -> (dtsabc, Forward); "dtsabc/Reverse" -> (dtsabc, Reverse)."""
    job_id, sep, direction = text.strip().partition("/")
    if not job_id:
        raise ScenarioError(f"bad job key {text!r}: expected 'id' or 'id/Reverse'")
    if not sep:
        return JobKey(job_id, "Forward")
    try:
        return JobKey(job_id, choose(direction, ("Forward", "Reverse"), "direction"))
    except ValueError as exc:
        raise ScenarioError(f"bad job key {text!r}: {exc}") from None
