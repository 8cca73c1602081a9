"""Scenarios for the DTS simulator: the file format, its validation, the timeline, and the
conversion of a friendly job description into the JSON DescribeSynchronizationJobs returns.

Why a data file and not Python: a scenario is something a user writes to reproduce what
their DTS account did ("this job failed at 02:00, then that one lagged"), and a test reads
step by step. Plain TOML keeps it reviewable and lets the same file drive the tests, the
demo and `dts-watcher simulate`. The format is documented for users in docs/simulator.md.

The pieces, in the order data flows through them:

- `Scenario` (and `JobSpec`, `StepSpec`, `Fault`, ...): pydantic models with
  `extra="forbid"`, so a typo in a file is an error that names the file and the field,
  never a silently ignored key. `load_scenario` reads a built-in by name or a file by path
  and also dry-runs the whole timeline, so a step that names a job that does not exist
  fails at load time rather than halfway through a demo.
- `ScenarioState`: the jobs as they are now, and how far the timeline has got. It is a
  plain object without locks; the server serializes access to it.
- `job_to_api` / `page_body`: the JSON shape, with realistic defaults for every field the
  reference documents (precheck items, endpoints, objects, times) and optional "quirks"
  that reproduce the variations real responses show, so clients can be tested against them.

Everything here is deterministic: the same scenario serves the same jobs byte for byte
(request ids aside), which is what lets tests compare served data step by step.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from watcher.snapshot import KNOWN_STATUSES

__all__ = [
    "DEFAULT_PRECHECK_ITEMS",
    "QUIRKS",
    "EndpointSpec",
    "Fault",
    "FaultKind",
    "GenerateSpec",
    "JobKey",
    "JobSpec",
    "ObjectSpec",
    "PrecheckItemSpec",
    "PrecheckSpec",
    "Quirk",
    "Scenario",
    "ScenarioError",
    "ScenarioState",
    "StageSpec",
    "StepSpec",
    "builtin_scenarios",
    "job_to_api",
    "load_scenario",
    "page_body",
    "parse_job_key",
    "parse_scenario",
]


class ScenarioError(ValueError):
    """A scenario file (or a change made at run time) that cannot be used, and why."""


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

FaultKind = Literal[
    "throttle",  # 400 Throttling.User, header x-acs-retry-after (milliseconds)
    "unavailable",  # 503 ServiceUnavailable
    "internal",  # 500 InternalError
    "slow",  # wait `seconds`, then answer normally
    "malformed",  # 200 with a body that is not the expected JSON (`variant`)
    "expired_token",  # 403 InvalidSecurityToken.Expired
    "forbidden",  # 403 Forbidden.RAM
    "drift",  # a job is added or removed before this page is read (`action`)
]

_STATUS_BY_LOWER = {s.lower(): s for s in KNOWN_STATUSES}
_STATUS_BY_LOWER.update({"initializing": "Initializating", "suspended": "Suspending"})
_STAGE_STATUSES = ("NotStarted", "Migrating", "Failed", "Finished")
_PRECHECK_STATUSES = ("NotStarted", "Prechecking", "Success", "Failed", "Finished")
_CHECK_STATUSES = ("Success", "Failed", "Warning")

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

# Deterministic "now" for jobs that do not say when they were created.
_BASE_CREATED = datetime(2024, 3, 1, 2, 0, 0, tzinfo=UTC)
_BEIJING = timezone(timedelta(hours=8))

# Error texts used when a job is in an error status and the scenario gave none.
_DEFAULT_ERRORS = {
    "Failed": (
        "DTS-070211: Connect Source DB failed. cause by [com.mysql.jdbc.exceptions.jdbc4."
        "CommunicationsException:Communications link failure]"
    ),
    "InitializeFailed": 'DTS-1020042 Execute sql error sql: ERROR: type "geometry" does not exist;',
    "PrecheckFailed": "Original error: Access denied for user 'dtstest'@'100.104.***.**'"
    " (using password: YES)",
}


def _choose(value: Any, allowed: Iterable[str], what: str) -> str:
    """`value` in the spelling of `allowed`, matched case-insensitively."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    options = list(allowed)
    for option in options:
        if option.lower() == value.strip().lower():
            return option
    raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(options)}")


def normalize_job_status(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"status must be a string, got {type(value).__name__}")
    found = _STATUS_BY_LOWER.get(value.strip().lower())
    if found is None:
        raise ValueError(f"unknown status {value!r}; expected one of {', '.join(KNOWN_STATUSES)}")
    return found


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------


class PrecheckItemSpec(_Spec):
    name: str
    status: str = "Success"
    error_message: str | None = None
    repair_method: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return _choose(v, _CHECK_STATUSES, "precheck item status")


class PrecheckSpec(_Spec):
    """PrecheckStatus. `items` left out: the 16 usual checks, each with status Success."""

    status: str = "Success"
    percent: float | None = None
    items: list[PrecheckItemSpec] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return _choose(v, _PRECHECK_STATUSES, "precheck status")


class StageSpec(_Spec):
    """StructureInitializationStatus or DataInitializationStatus."""

    status: str
    percent: float | None = None
    progress: int | None = None
    error_message: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return _choose(v, _STAGE_STATUSES, "initialization status")


class EndpointSpec(_Spec):
    """SourceEndpoint / DestinationEndpoint; fields left out get plausible values."""

    instance_id: str | None = None
    engine: str | None = None
    instance_type: str | None = None
    ip: str | None = None
    port: int | None = None
    user: str | None = None


class ObjectSpec(_Spec):
    """One SynchronizationObjects entry: a schema, its new name, included/excluded tables."""

    schema_name: str = Field(alias="schema")
    new_schema: str | None = None
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class JobSpec(_Spec):
    """One synchronization job as a scenario describes it.

    A two-way instance is two JobSpecs with the same `id`, one per `direction`. Fields left
    out get realistic values derived from the id and the status (see `job_to_api`).
    """

    id: str = Field(min_length=1)
    region: str = Field(min_length=1)
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

    @field_validator("direction", mode="before")
    @classmethod
    def _direction(cls, v: Any) -> str:
        return _choose(v, ("Forward", "Reverse"), "direction")

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        return normalize_job_status(v)

    @field_validator("pay_type", mode="before")
    @classmethod
    def _pay_type(cls, v: Any) -> str:
        return _choose(v, ("PrePaid", "PostPaid"), "pay_type")

    @field_validator("created", "expire_time")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)  # TOML local datetimes are read as UTC
        return v

    @property
    def key(self) -> JobKey:
        return JobKey(self.id, self.direction)


# Fields a step's `set` may not change: they are what identifies the job.
_IDENTITY_FIELDS = frozenset({"id", "region", "direction"})


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
        return JobKey(job_id, _choose(direction, ("Forward", "Reverse"), "direction"))
    except ValueError as exc:
        raise ScenarioError(f"bad job key {text!r}: {exc}") from None


# --------------------------------------------------------------------------------------
# Faults, generated jobs, steps, the scenario
# --------------------------------------------------------------------------------------


class Fault(_Spec):
    """Something going wrong on the next `count` matching requests (-1: until cleared).

    Faults only hit requests that passed authentication and parameter checks, so a test
    that injects one knows which request it hits. `region` and `page` narrow the match.
    """

    kind: FaultKind
    region: str | None = None
    page: int | None = Field(None, ge=1)
    count: int = 1
    retry_after_ms: int = Field(200, ge=0)  # throttle
    seconds: float = Field(1.0, ge=0)  # slow
    variant: Literal["truncated", "html", "array"] = "truncated"  # malformed
    action: Literal["remove", "add"] = "remove"  # drift

    @field_validator("count")
    @classmethod
    def _count(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("count must be a positive number of requests, or -1 (until cleared)")
        return v

    def matches(self, region: str, page: int) -> bool:
        return (self.region is None or self.region == region) and (
            self.page is None or self.page == page
        )


class GenerateSpec(_Spec):
    """Many similar jobs: `count` of them, ids `<id_prefix><NNN>` numbered from `start`."""

    region: str = Field(min_length=1)
    count: int = Field(ge=0, le=100_000)
    id_prefix: str = "dtsgen"
    name_prefix: str = "generated job"
    start: int = Field(1, ge=0)
    status: str | list[str] = "Synchronizing"  # a list is used in turn (cycled)
    delay: int | list[int] = 0  # likewise
    pay_type: str = "PostPaid"
    job_class: str = "medium"
    resource_group: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    quirks: list[Quirk] = Field(default_factory=list)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("status list must not be empty")
            return [normalize_job_status(s) for s in v]
        return normalize_job_status(v)

    @field_validator("delay")
    @classmethod
    def _delay(cls, v: int | list[int]) -> int | list[int]:
        values = v if isinstance(v, list) else [v]
        if not values or any(d < 0 for d in values):
            raise ValueError("delay must be >= 0 (a list must not be empty)")
        return v

    @field_validator("pay_type", mode="before")
    @classmethod
    def _pay_type(cls, v: Any) -> str:
        return _choose(v, ("PrePaid", "PostPaid"), "pay_type")

    def ids(self) -> list[str]:
        width = max(3, len(str(self.start + self.count - 1)))
        return [f"{self.id_prefix}{self.start + i:0{width}d}" for i in range(self.count)]

    def expand(self) -> list[JobSpec]:
        statuses = self.status if isinstance(self.status, list) else [self.status]
        delays = self.delay if isinstance(self.delay, list) else [self.delay]
        jobs = []
        for i, job_id in enumerate(self.ids()):
            number = self.start + i
            jobs.append(
                JobSpec(
                    id=job_id,
                    region=self.region,
                    name=f"{self.name_prefix} {number}",
                    status=statuses[i % len(statuses)],
                    delay=delays[i % len(delays)],
                    pay_type=self.pay_type,
                    job_class=self.job_class,
                    resource_group=self.resource_group,
                    tags=dict(self.tags),
                    quirks=list(self.quirks),
                )
            )
        return jobs


class StepSpec(_Spec):
    """One step of the timeline. Applied in this order: add, set, remove, then faults."""

    note: str = ""
    add: list[JobSpec] = Field(default_factory=list)
    changes: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="set")
    remove: list[str] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)


class Scenario(_Spec):
    name: str = "scenario"
    description: str = ""
    step_seconds: float = Field(3.0, gt=0)
    regions: list[str] | None = None  # the regions a watcher should poll; default: jobs'
    quirks: list[Quirk] = Field(default_factory=list)  # for every job (and the page)
    jobs: list[JobSpec] = Field(default_factory=list)
    generate: list[GenerateSpec] = Field(default_factory=list)
    steps: list[StepSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        seen: set[JobKey] = set()
        for key, region in self._initial_keys():
            if key in seen:
                raise ValueError(f"job {key} is defined twice")
            seen.add(key)
            if self.regions is not None and region not in self.regions:
                raise ValueError(
                    f"job {key} is in region {region!r}, which is not listed in"
                    f" regions {self.regions}"
                )
        return self

    def _initial_keys(self) -> Iterator[tuple[JobKey, str]]:
        """(key, region) of every initial job, without building the generated ones."""
        for job in self.jobs:
            yield job.key, job.region
        for block in self.generate:
            for job_id in block.ids():
                yield JobKey(job_id, "Forward"), block.region

    def initial_jobs(self) -> list[JobSpec]:
        """The jobs at step 0: `jobs` in file order, then each `generate` block's."""
        out = list(self.jobs)
        for block in self.generate:
            out.extend(block.expand())
        return out

    def all_regions(self) -> list[str]:
        """`regions` if given, else every region a job (initial or added later) is in."""
        if self.regions is not None:
            return list(self.regions)
        found: dict[str, None] = {}
        for job in self.jobs:
            found.setdefault(job.region)
        for block in self.generate:
            found.setdefault(block.region)
        for step in self.steps:
            for job in step.add:
                found.setdefault(job.region)
        return list(found)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _builtin_folder() -> Traversable:
    # A plain folder of data files beside this module (package-data in pyproject.toml).
    return resources.files("watcher.simulator").joinpath("scenarios")


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package (load them with `load_scenario`)."""
    folder = _builtin_folder()
    if not folder.is_dir():
        return []
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name ("demo"), or a scenario file by path.

    Raises ScenarioError naming the file and the problem when it cannot be used.
    """
    if isinstance(name_or_path, str) and name_or_path in builtin_scenarios():
        resource = _builtin_folder().joinpath(f"{name_or_path}.toml")
        text = resource.read_text(encoding="utf-8")
        return parse_scenario(text, source=f"built-in scenario {name_or_path!r}", name=name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(
            f"{name_or_path}: no such scenario file, and not a built-in scenario"
            f" (built-in: {', '.join(builtin_scenarios())})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse_scenario(text, source=str(path), name=path.stem)


def parse_scenario(text: str, source: str = "<string>", name: str | None = None) -> Scenario:
    """A scenario from TOML text; `source` names it in errors, `name` is the default name."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    if name is not None:
        data.setdefault("name", name)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {describe_validation_error(exc)}") from None
    # Dry-run the timeline: a step naming a missing job fails now, not mid-demo.
    if scenario.steps:
        try:
            ScenarioState(scenario).advance(len(scenario.steps))
        except ScenarioError as exc:
            raise ScenarioError(f"{source}: {exc}") from None
    return scenario


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
# The timeline
# --------------------------------------------------------------------------------------


class ScenarioState:
    """The jobs as they are at the current step. Not thread-safe: callers serialize.

    Jobs keep the order they were created in (file order, then additions); a drift fault
    may insert one at the front of a region, which is the point of that fault.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.step = 0
        self.note = ""
        self._jobs: dict[JobKey, JobSpec] = {}
        # When each job was created, for jobs whose spec does not say: a fixed base time
        # plus a little per job ever added, so the same scenario always serves the same.
        self._created_at: dict[JobKey, datetime] = {}
        self._created = 0
        self._drift = 0
        # job -> (the spec it was rendered from, its API JSON); specs are immutable, so an
        # entry is valid as long as the job's current spec *is* that spec.
        self._rendered: dict[JobKey, tuple[JobSpec, dict[str, Any]]] = {}
        # Bumped by every change to the jobs, so a reader can cache what it derived from
        # them (the server caches selections per version).
        self.version = 0
        for job in scenario.initial_jobs():
            self.add_job(job)

    # -- reading ---------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        return len(self.scenario.steps)

    def get(self, key: JobKey | str) -> JobSpec | None:
        return self._jobs.get(key if isinstance(key, JobKey) else parse_job_key(key))

    def jobs(self, region: str | None = None) -> list[JobSpec]:
        return [j for j in self._jobs.values() if region is None or j.region == region]

    def regions(self) -> list[str]:
        found = dict.fromkeys(self.scenario.all_regions())
        for job in self._jobs.values():
            found.setdefault(job.region)
        return list(found)

    def select(
        self,
        region: str,
        name: str | None = None,
        tags: Iterable[tuple[str, str | None]] = (),
        resource_group: str | None = None,
    ) -> list[JobSpec]:
        """The jobs a DescribeSynchronizationJobs call with these filters lists, in order."""
        wanted_tags = list(tags)
        needle = name.lower() if name else None
        # One pass per filter actually given: with 10,000 jobs this is served for every
        # page request that misses the server's cache, so the common case stays one loop.
        out = [job for job in self._jobs.values() if job.region == region]
        if needle is not None:
            out = [job for job in out if needle in display_name(job).lower()]
        if resource_group:
            out = [job for job in out if job.resource_group == resource_group]
        for key, value in wanted_tags:
            out = [
                job for job in out if key in job.tags and (value is None or job.tags[key] == value)
            ]
        return out

    def render(self, job: JobSpec) -> dict[str, Any]:
        """`job_to_api(job, scenario quirks)`, cached until the job changes. Do not mutate."""
        cached = self._rendered.get(job.key)
        if cached is not None and cached[0] is job:
            return cached[1]
        rendered = job_to_api(job, self.scenario.quirks, created=self.created_at(job))
        self._rendered[job.key] = (job, rendered)
        return rendered

    def created_at(self, job: JobSpec) -> datetime:
        """The job's creation time: its own `created`, else the one given when added."""
        return job.created or self._created_at.get(job.key, _BASE_CREATED)

    # -- changing --------------------------------------------------------------------

    def add_job(self, job: JobSpec | Mapping[str, Any], *, front: bool = False) -> JobSpec:
        spec = job if isinstance(job, JobSpec) else _validate_job(job)
        if spec.key in self._jobs:
            raise ScenarioError(f"job {spec.key} already exists")
        partner = self._jobs.get(JobKey(spec.id, _other(spec.direction)))
        if partner is not None:  # the two halves of a two-way instance were created together
            self._created_at[spec.key] = self.created_at(partner)
        else:
            self._created_at[spec.key] = _BASE_CREATED + timedelta(minutes=37 * self._created)
        self._created += 1
        self.version += 1
        if front:
            first = next((k for k, j in self._jobs.items() if j.region == spec.region), None)
            if first is not None:
                items = list(self._jobs.items())
                index = [k for k, _ in items].index(first)
                items.insert(index, (spec.key, spec))
                self._jobs = dict(items)
                return spec
        self._jobs[spec.key] = spec
        return spec

    def set_job(self, key: JobKey | str, changes: Mapping[str, Any]) -> JobSpec:
        """Change some fields of a job. A value of "" puts the field back to its default.

        Nested tables (precheck, structure_init, source, ...) are replaced whole.
        """
        job_key = key if isinstance(key, JobKey) else parse_job_key(key)
        current = self._jobs.get(job_key)
        if current is None:
            raise ScenarioError(f"no job {job_key} (jobs are named 'id' or 'id/Reverse')")
        fields = JobSpec.model_fields
        known = {info.alias or name for name, info in fields.items()} | set(fields)
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ScenarioError(f"job {job_key}: unknown field(s) {', '.join(unknown)}")
        fixed = sorted(set(changes) & _IDENTITY_FIELDS)
        if fixed:
            raise ScenarioError(f"job {job_key}: {', '.join(fixed)} cannot be changed")
        data = current.model_dump(exclude_unset=True, by_alias=True)
        for field, value in changes.items():
            if isinstance(value, str) and value == "":
                data.pop(field, None)
            else:
                data[field] = value
        try:
            updated = JobSpec.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(f"job {job_key}: {describe_validation_error(exc)}") from None
        self._jobs[job_key] = updated
        self.version += 1
        return updated

    def remove_job(self, key: JobKey | str) -> JobSpec:
        job_key = key if isinstance(key, JobKey) else parse_job_key(key)
        if job_key not in self._jobs:
            raise ScenarioError(f"no job {job_key} to remove")
        self._rendered.pop(job_key, None)
        self._created_at.pop(job_key, None)
        self.version += 1
        return self._jobs.pop(job_key)

    def apply(self, step: StepSpec) -> list[Fault]:
        """Apply one step's changes; returns the faults it asks for (the caller owns those)."""
        for job in step.add:
            self.add_job(job)
        for key, changes in step.changes.items():
            self.set_job(key, changes)
        for key in step.remove:
            self.remove_job(key)
        self.note = step.note
        return list(step.faults)

    def advance(self, n: int = 1) -> list[Fault]:
        """Apply the next `n` steps (fewer if the timeline ends); returns their faults."""
        faults: list[Fault] = []
        while n > 0 and self.step < self.total_steps:
            index = self.step + 1
            try:
                faults.extend(self.apply(self.scenario.steps[self.step]))
            except ScenarioError as exc:
                raise ScenarioError(f"steps[{index - 1}] (step {index}): {exc}") from None
            self.step = index
            n -= 1
        return faults

    def drift(self, region: str, action: str) -> JobSpec | None:
        """What a drift fault does: a job appears at the front of, or leaves, a region."""
        if action == "add":
            self._drift += 1
            return self.add_job(
                JobSpec(
                    id=f"dtsdrift{self._drift:03d}",
                    region=region,
                    name=f"drifted in {self._drift}",
                    status="NotStarted",
                ),
                front=True,
            )
        first = next((k for k, j in self._jobs.items() if j.region == region), None)
        return self.remove_job(first) if first is not None else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready view for the admin API: step, note and the jobs per region."""
        return {
            "scenario": self.scenario.name,
            "step": self.step,
            "steps": self.total_steps,
            "note": self.note,
            "regions": {
                region: [
                    {
                        **job.model_dump(mode="json", by_alias=True, exclude_none=True),
                        "created": _utc(self.created_at(job)),
                    }
                    for job in self.jobs(region)
                ]
                for region in self.regions()
            },
        }


def _other(direction: str) -> str:
    return "Reverse" if direction == "Forward" else "Forward"


def _validate_job(data: Mapping[str, Any]) -> JobSpec:
    try:
        return JobSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ScenarioError(f"job: {describe_validation_error(exc)}") from None


# --------------------------------------------------------------------------------------
# Conversion into the API's JSON shape
# --------------------------------------------------------------------------------------


def display_name(job: JobSpec) -> str:
    return job.name if job.name is not None else f"sync {job.id}"


def _num(value: float | int) -> str:
    """How DTS writes numbers in strings: "100", "0.5"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _beijing(moment: datetime) -> str:
    return moment.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S.0")


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _endpoint(job: JobSpec, side: str) -> dict[str, Any]:
    """SourceEndpoint / DestinationEndpoint: what the scenario gave, the rest derived."""
    given = job.source if side == "source" else job.destination
    # Derived from the id, so they are stable; a Reverse job runs from the Forward job's
    # destination back to its source.
    origin = side
    if job.direction == "Reverse":
        origin = "destination" if side == "source" else "source"
    d = _digest(f"{job.id}:{origin}")
    out = {
        "InstanceId": f"rm-bp{d[:6].hex()}{'s' if origin == 'source' else 'd'}",
        "IP": f"172.16.{d[6] % 250 + 1}.{d[7] % 250 + 1}",
        "InstanceType": "RDS",
        "Port": "3306",
        "UserName": "dtstest",
        "EngineName": "MySQL",
    }
    if given is not None:
        for key, value in (
            ("InstanceId", given.instance_id),
            ("IP", given.ip),
            ("InstanceType", given.instance_type),
            ("Port", None if given.port is None else str(given.port)),
            ("UserName", given.user),
            ("EngineName", given.engine),
        ):
            if value is not None:
                out[key] = value
    return out


def _objects(job: JobSpec) -> list[ObjectSpec]:
    if job.objects is not None:
        return job.objects
    base = job.id.removeprefix("dts")[:12] or "app"
    return [ObjectSpec(schema_name=f"{base}_db", new_schema=f"{base}_db", include=[], exclude=[])]


# Built once: constructing validated models for every default of every job is slow.
_STAGES = {status: StageSpec(status=status) for status in _STAGE_STATUSES}
_SUCCESS_ITEMS = [PrecheckItemSpec(name=name) for name in DEFAULT_PRECHECK_ITEMS]
_PRECHECK_SUCCESS = PrecheckSpec(status="Success", percent=100)
_PRECHECK_NOT_STARTED = PrecheckSpec(status="NotStarted", percent=0, items=[])
_PRECHECK_RUNNING = PrecheckSpec(
    status="Prechecking", percent=50, items=_SUCCESS_ITEMS[: len(_SUCCESS_ITEMS) // 2]
)


def _auto_precheck(job: JobSpec) -> PrecheckSpec:
    if job.status == "NotStarted":
        return _PRECHECK_NOT_STARTED
    if job.status == "Prechecking":
        return _PRECHECK_RUNNING
    if job.status == "PrecheckFailed":
        items = list(_SUCCESS_ITEMS)
        items[1] = PrecheckItemSpec(
            name=DEFAULT_PRECHECK_ITEMS[1],
            status="Failed",
            error_message=job.error_message or _DEFAULT_ERRORS["PrecheckFailed"],
            repair_method="CHECK_ERROR_SRC_AUTH_REPAIR",
        )
        return PrecheckSpec(status="Failed", percent=100, items=items)
    return _PRECHECK_SUCCESS


def _auto_stage(job: JobSpec, stage: str) -> StageSpec:
    enabled = job.structure_initialization if stage == "structure" else job.data_initialization
    status = job.status
    if not enabled or status in ("NotStarted", "Prechecking", "PrecheckFailed"):
        return _STAGES["NotStarted"]
    if status == "Initializating":
        return _STAGES["Finished" if stage == "structure" else "Migrating"]
    if status == "InitializeFailed":
        if stage == "structure":
            return StageSpec(
                status="Failed",
                error_message=job.error_message or _DEFAULT_ERRORS["InitializeFailed"],
            )
        return _STAGES["NotStarted"]
    return _STAGES["Finished"]


_STAGE_PERCENT = {"NotStarted": 0.0, "Migrating": 50.0, "Failed": 30.0, "Finished": 100.0}


def _stage_json(spec: StageSpec, stage: str, job: JobSpec) -> dict[str, Any]:
    percent = spec.percent if spec.percent is not None else _STAGE_PERCENT[spec.status]
    if spec.progress is not None:
        progress = spec.progress
    else:
        full = (
            sum(max(1, len(o.include)) for o in _objects(job)) if stage == "structure" else 200_001
        )
        progress = int(full * percent / 100)
    out: dict[str, Any] = {
        "Status": spec.status,
        "Percent": _num(percent),
        "Progress": str(progress),
    }
    if spec.error_message:
        out["ErrorMessage"] = spec.error_message
    return out


def job_to_api(
    job: JobSpec, quirks: Iterable[str] = (), created: datetime | None = None
) -> dict[str, Any]:
    """One SynchronizationInstances entry, as DescribeSynchronizationJobs serves it.

    `quirks` are the scenario-wide ones; the job's own are added to them. `created` is
    used when the job does not say when it was created (ScenarioState knows).
    """
    q = set(quirks) | set(job.quirks)
    created = job.created or created or _BASE_CREATED
    error = job.error_message
    if error is None and job.status in ("Failed", "InitializeFailed"):
        error = _DEFAULT_ERRORS[job.status]
    running = job.status in ("Synchronizing", "Modifying")
    rps = job.rps if job.rps is not None else (100.0 if running else 0.0)
    flow = job.flow if job.flow is not None else (0.52 if running else 0.0)
    precheck = job.precheck if job.precheck is not None else _auto_precheck(job)
    structure = job.structure_init or _auto_stage(job, "structure")
    data = job.data_init or _auto_stage(job, "data")

    out: dict[str, Any] = {
        "SynchronizationJobId": job.id,
        "SynchronizationJobName": display_name(job),
        "SynchronizationDirection": job.direction,
        "Status": job.status,
        "Delay": str(job.delay),
    }
    if error:
        out["ErrorMessage"] = error
    out.update(
        {
            "PayType": job.pay_type,
            "CreateTime": _beijing(created),
            "JobCreateTime": _utc(created),
            "InstanceCreateTime": _utc(created + timedelta(seconds=99)),
            "SynchronizationJobClass": job.job_class,
            "StructureInitialization": job.structure_initialization,
            "DataInitialization": job.data_initialization,
        }
    )
    if job.pay_type == "PrePaid":
        out["ExpireTime"] = _utc(job.expire_time or created + timedelta(days=365))
    elif job.expire_time is not None:
        out["ExpireTime"] = _utc(job.expire_time)
    if job.resource_group:
        out["ResourceGroupId"] = job.resource_group
    out["Tags"] = [{"Key": k, "Value": v} for k, v in job.tags.items()]
    out["SynchronizationObjects"] = [
        {
            "SchemaName": o.schema_name,
            "NewSchemaName": o.new_schema or o.schema_name,
            "TableIncludes": [{"TableName": t} for t in o.include],
            "TableExcludes": [{"TableName": t} for t in o.exclude],
        }
        for o in _objects(job)
    ]
    out["StructureInitializationStatus"] = _stage_json(structure, "structure", job)
    out["DataInitializationStatus"] = _stage_json(data, "data", job)
    out["DataSynchronizationStatus"] = {}  # documented as no longer available
    out["SourceEndpoint"] = _endpoint(job, "source")
    out["DestinationEndpoint"] = _endpoint(job, "destination")
    out["Performance"] = {"RPS": _num(rps), "FLOW": f"{flow:.2f}MB/s"}
    items = precheck.items if precheck.items is not None else _SUCCESS_ITEMS
    percent = precheck.percent
    if percent is None:
        percent = 0.0 if precheck.status in ("NotStarted",) else 100.0
    detail = []
    for item in items:
        entry = {"CheckStatus": item.status, "ItemName": item.name}
        if item.error_message:
            entry["ErrorMessage"] = item.error_message
        if item.repair_method:
            entry["RepairMethod"] = item.repair_method
        detail.append(entry)
    out["PrecheckStatus"] = {"Status": precheck.status, "Percent": _num(percent), "Detail": detail}
    return _apply_quirks(out, q)


def _apply_quirks(out: dict[str, Any], q: set[str]) -> dict[str, Any]:
    if "lowercase_status" in q:
        out["Status"] = out["Status"].lower()
    if "strings_for_bools" in q:
        for key in ("StructureInitialization", "DataInitialization"):
            out[key] = "true" if out[key] else "false"
    if "numbers_as_json" in q:
        out["Delay"] = int(out["Delay"])
        for key in ("StructureInitializationStatus", "DataInitializationStatus"):
            out[key]["Percent"] = _json_number(out[key]["Percent"])
            out[key]["Progress"] = int(out[key]["Progress"])
        for key in ("SourceEndpoint", "DestinationEndpoint"):
            out[key]["Port"] = int(out[key]["Port"])
        perf = out["Performance"]
        perf["RPS"] = _json_number(perf["RPS"])
        perf["FLOW"] = _json_number(perf["FLOW"].removesuffix("MB/s"))
        out["PrecheckStatus"]["Percent"] = _json_number(out["PrecheckStatus"]["Percent"])
    if "empty_strings" in q:
        out.setdefault("ErrorMessage", "")
        out.setdefault("ExpireTime", "")
        out.setdefault("ResourceGroupId", "")
        for key in ("StructureInitializationStatus", "DataInitializationStatus"):
            out[key].setdefault("ErrorMessage", "")
        for entry in out["PrecheckStatus"]["Detail"]:
            entry.setdefault("ErrorMessage", "")
            entry.setdefault("RepairMethod", "")
    if "wrapped_lists" in q:
        out["Tags"] = {"Tag": out["Tags"]}
        for obj in out["SynchronizationObjects"]:
            obj["TableIncludes"] = {"TableInclude": obj["TableIncludes"]}
            obj["TableExcludes"] = {"TableExclude": obj["TableExcludes"]}
        out["SynchronizationObjects"] = {"SynchronizationObject": out["SynchronizationObjects"]}
        out["PrecheckStatus"]["Detail"] = {"Detail": out["PrecheckStatus"]["Detail"]}
    if "extra_fields" in q:
        out["DtsInstanceID"] = f"{out['SynchronizationJobId']}i"
        out["Reserved"] = '{"srcHostPorts":"","destHostPorts":""}'
        out["EtlSafeCheckpoint"] = None
        out["PrecheckStatus"]["Reserved"] = {}
    if "omit_precheck" in q:
        del out["PrecheckStatus"]
    if "omit_performance" in q:
        del out["Performance"]
    if "lowercase_keys" in q:
        return _lower_keys(out)  # type: ignore[no-any-return]
    return out


def _json_number(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() else number


def _lower_keys(value: Any) -> Any:
    """camelCase every key, recursively ("SynchronizationJobId" -> "synchronizationJobId")."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def page_body(
    jobs_on_page: Iterable[JobSpec],
    *,
    total: int,
    page_number: int,
    request_id: str,
    quirks: Iterable[str] = (),
    render: Callable[[JobSpec], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A whole successful response body for one page.

    `render` turns a job into its JSON (default: `job_to_api` with `quirks`); the server
    passes `ScenarioState.render`, which caches.
    """
    scenario_quirks = set(quirks)
    if render is None:
        instances: Any = [job_to_api(job, scenario_quirks) for job in jobs_on_page]
    else:
        instances = [render(job) for job in jobs_on_page]
    count = len(instances)
    if "wrapped_lists" in scenario_quirks:
        instances = {"SynchronizationInstance": instances}
    return {
        "TotalRecordCount": total,
        "PageNumber": page_number,
        "PageRecordCount": count,
        "RequestId": request_id,
        "SynchronizationInstances": instances,
    }
