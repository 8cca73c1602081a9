"""Scenarios for the DTS simulator: the file format and how a file is loaded.

Why a data file and not Python: a scenario is something a user writes to reproduce what
their DTS account did ("this job failed at 02:00, then that one lagged"), and a test reads
step by step. Plain TOML keeps it reviewable and lets the same file drive the tests, the
demo and `dts-watcher simulate`. The format is documented for users in docs/simulator.md.

The pieces, in the order data flows through them:

- `Scenario` (and `JobSpec`, `StepSpec`, `Fault`, ...): pydantic models with
  `extra="forbid"`, so a typo in a file is an error that names the file and the field,
  never a silently ignored key. The job models are in `jobs.py`. `load_scenario` reads a
  built-in by name or a file by path and also dry-runs the whole timeline, so a step that
  names a job that does not exist fails at load time rather than halfway through a demo.
- `ScenarioState` (`timeline.py`): the jobs as they are now, and how far the timeline
  has got.
- `job_to_api` / `page_body` (`render.py`): the JSON shape DescribeSynchronizationJobs
  answers with.

Everything is deterministic: the same scenario serves the same jobs byte for byte
(request ids aside), which is what lets tests compare served data step by step.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from dts_sim.jobs import (
    JobKey,
    JobSpec,
    Quirk,
    ScenarioError,
    Spec,
    choose,
    describe_validation_error,
    normalize_job_status,
)
from dts_sim.timeline import ScenarioState

__all__ = [
    "Fault",
    "FaultKind",
    "GenerateSpec",
    "Scenario",
    "StepSpec",
    "builtin_scenarios",
    "load_scenario",
    "parse_scenario",
]

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


# --------------------------------------------------------------------------------------
# Faults, generated jobs, steps, the scenario
# --------------------------------------------------------------------------------------


class Fault(Spec):
    """Something going wrong on the next `count` matching requests (-1: until cleared).

    Faults only hit requests that passed authentication and parameter checks, so a test
    that injects one knows which request it hits. `region` and `page` narrow the match.
    """

    kind: FaultKind
    region: str | None = None
    page: int | None = Field(None, ge=1)
    account: str | None = None  # only requests signed by this account's keys
    job_type: str | None = None  # only this DescribeDtsJobs listing (sync for the legacy)
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

    def matches(
        self, region: str, page: int, account: str = "default", job_type: str = "sync"
    ) -> bool:
        return (
            (self.region is None or self.region == region)
            and (self.page is None or self.page == page)
            and (self.account is None or self.account == account)
            and (self.job_type is None or self.job_type == job_type)
        )


class GenerateSpec(Spec):
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
    account: str = "default"
    job_type: str = "sync"

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
        return choose(v, ("PrePaid", "PostPaid"), "pay_type")

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
                    account=self.account,
                    job_type=self.job_type,
                )
            )
        return jobs


class StepSpec(Spec):
    """One step of the timeline. Applied in this order: add, set, remove, then faults."""

    note: str = ""
    add: list[JobSpec] = Field(default_factory=list)
    changes: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="set")
    remove: list[str] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)


class Scenario(Spec):
    name: str = "scenario"
    description: str = ""
    step_seconds: float = Field(3.0, gt=0)
    regions: list[str] | None = None  # the regions a watcher should poll; default: jobs'
    # Accounts the simulator knows besides those its jobs are in (and `default`).
    accounts: list[str] = Field(default_factory=list)
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

    def all_accounts(self) -> list[str]:
        """`accounts` and every account a job (initial or added later) is in."""
        found: dict[str, None] = dict.fromkeys(self.accounts)
        for job in self.jobs:
            found.setdefault(job.account)
        for block in self.generate:
            found.setdefault(block.account)
        for step in self.steps:
            for job in step.add:
                found.setdefault(job.account)
        return list(found)

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
    return resources.files("dts_sim").joinpath("scenarios")


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
