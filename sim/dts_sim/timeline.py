"""The timeline of a scenario: the jobs as they are now, and how far the steps have got.

`ScenarioState` is a plain object without locks; the server serializes access to it. It
applies steps (add, set, remove, then the step's faults are handed back to the caller),
run-time changes from the admin API, and what a drift fault does to a region.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dts_sim.jobs import (
    JobKey,
    JobSpec,
    ScenarioError,
    describe_validation_error,
    parse_job_key,
    signed_seconds,
)
from dts_sim.render import BASE_CREATED, Filters, display_name, job_to_api, utc_text
from dts_sim.render_dtsjobs import Entry, default_checkpoint, dts_job_to_api

if TYPE_CHECKING:
    from dts_sim.scenario import Fault, Scenario, StepSpec

__all__ = ["ScenarioState"]

# Fields a step's `set` may not change: they are what identifies the job.
_IDENTITY_FIELDS = frozenset({"id", "region", "direction"})
# `tick`: each tick, a job's delay moves to its own `delay` plus 1.._WOBBLE seconds (a
# different value at every tick, never twice the same in a row), and its checkpoint goes
# on by _CHECKPOINT_STEP seconds, as a live job's do between two polls.
_WOBBLE = 10
_CHECKPOINT_STEP = 5


class ScenarioState:
    """The jobs as they are at the current step. Not thread-safe: callers serialize.

    Jobs keep the order they were created in (file order, then additions); a drift fault
    may insert one at the front of a region, which is the point of that fault.
    """

    def __init__(self, scenario: Scenario, clock: Callable[[], datetime] | None = None) -> None:
        self.scenario = scenario
        # The simulator's clock: where a job's `expires_in` and `stalled` are relative to.
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stalled_at: dict[JobKey, datetime] = {}
        self.step = 0
        self.note = ""
        self._jobs: dict[JobKey, JobSpec] = {}
        # When each job was created, for jobs whose spec does not say: a fixed base time
        # plus a little per job ever added, so the same scenario always serves the same.
        self._created_at: dict[JobKey, datetime] = {}
        self._created = 0
        self._drift = 0
        # Bumped by every change to the jobs, so a reader can cache what it derived from
        # them (benchmarks/simcache.py caches selections per version).
        self.version = 0
        # How many times the live fields moved (`tick`): 0, and every job serves its own
        # delay and checkpoint.
        self.ticks = 0
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

    def select_for(self, filters: Filters) -> list[JobSpec]:
        """The jobs a listing call with these filters shows, in order."""
        return self.select(
            filters.region,
            name=filters.name,
            tags=filters.tags,
            resource_group=filters.resource_group,
            account=filters.account,
            job_type=filters.job_type,
        )

    def select(
        self,
        region: str,
        name: str | None = None,
        tags: Iterable[tuple[str, str | None]] = (),
        resource_group: str | None = None,
        account: str = "default",
        job_type: str = "sync",
    ) -> list[JobSpec]:
        """The jobs of `account` and `job_type` a listing with these filters shows, in
        order (DescribeSynchronizationJobs: the sync ones)."""
        wanted_tags = list(tags)
        needle = name.lower() if name else None
        # One pass per filter actually given: with 10,000 jobs this is served for every
        # page request (that misses a cache), so the common case stays one loop.
        out = [
            job
            for job in self._jobs.values()
            if job.region == region and job.account == account and job.job_type == job_type
        ]
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
        """`job_to_api(job, scenario quirks)`, with the creation time this state gave it
        (and, for a stalled job, the delay it has grown to by now)."""
        return job_to_api(
            job, self.scenario.quirks, created=self.created_at(job), delay=self.delay_of(job)
        )

    def delay_of(self, job: JobSpec) -> int:
        """The delay served now: a stalled job's grows by a second each second; after
        `tick`, a moving job's wobbles around its own (see `moving`)."""
        since = self._stalled_at.get(job.key) if job.stalled else None
        if since is None:
            return job.delay + self._wobble(job)
        return job.delay + max(0, int((self._clock() - since).total_seconds()))

    def moving(self, job: JobSpec) -> bool:
        """Whether what `tick` moves is moving for this job: it is ticked, not stalled."""
        return self.ticks > 0 and not job.stalled

    def _wobble(self, job: JobSpec) -> int:
        if not self.moving(job):
            return 0
        seed = zlib.crc32(f"{job.account}/{job.id}/{job.direction}".encode())
        return 1 + (self.ticks * 7 + seed) % _WOBBLE  # 7 and 10 coprime: new at each tick

    def tick(self, n: int = 1) -> None:
        """Move every job's live fields, as between two polls of a real account: its delay
        (to its own plus a few seconds, a new value each tick) and its checkpoint (on by
        a few seconds); statuses and everything else stay. Stalled jobs stay stalled."""
        self.ticks += n
        self.version += 1

    def _timed(self, spec: JobSpec, before: JobSpec | None, changes: Mapping[str, Any]) -> JobSpec:
        """What `expires_in` and `stalled` mean now: an expire time; a stall from now."""
        now = self._clock()
        if spec.expires_in is not None:
            moment = now + timedelta(seconds=signed_seconds(spec.expires_in))
            spec = spec.model_copy(update={"expire_time": moment, "expires_in": None})
        started = spec.stalled and (before is None or not before.stalled or "delay" in changes)
        if started:
            self._stalled_at[spec.key] = now
        elif not spec.stalled:
            self._stalled_at.pop(spec.key, None)
        return spec

    def render_dts(self, entry: Entry) -> dict[str, Any]:
        """`dts_job_to_api` of a DescribeDtsJobs entry, with the creation time given (and,
        for a stalled job, the delay it has grown to by now, its checkpoint standing still)."""
        job, reverse = entry
        created = self.created_at(job)
        return dts_job_to_api(
            self._live(job),
            reverse and self._live(reverse),
            created,
            self.scenario.quirks,
        )

    def _live(self, job: JobSpec) -> JobSpec:
        """The job with the delay and checkpoint it shows now (stalled, or ticked)."""
        if not job.stalled and not self.moving(job):
            return job
        checkpoint = job.checkpoint if job.checkpoint is not None else default_checkpoint(job)
        if self.moving(job):
            checkpoint += _CHECKPOINT_STEP * self.ticks
        return job.model_copy(update={"delay": self.delay_of(job), "checkpoint": checkpoint})

    def accounts(self) -> list[str]:
        """Every account a job is (or was declared) in, `default` first."""
        found = dict.fromkeys(["default", *self.scenario.all_accounts()])
        for job in self._jobs.values():
            found.setdefault(job.account)
        return list(found)

    def created_at(self, job: JobSpec) -> datetime:
        """The job's creation time: its own `created`, else the one given when added."""
        return job.created or self._created_at.get(job.key, BASE_CREATED)

    # -- changing --------------------------------------------------------------------

    def add_job(self, job: JobSpec | Mapping[str, Any], *, front: bool = False) -> JobSpec:
        spec = job if isinstance(job, JobSpec) else _validate_job(job)
        if spec.key in self._jobs:
            raise ScenarioError(f"job {spec.key} already exists")
        spec = self._timed(spec, None, {})
        partner = self._jobs.get(JobKey(spec.id, _other(spec.direction)))
        if partner is not None:  # the two halves of a two-way instance were created together
            self._created_at[spec.key] = self.created_at(partner)
        else:
            self._created_at[spec.key] = BASE_CREATED + timedelta(minutes=37 * self._created)
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
        updated = self._timed(updated, current, changes)
        self._jobs[job_key] = updated
        self.version += 1
        return updated

    def remove_job(self, key: JobKey | str) -> JobSpec:
        job_key = key if isinstance(key, JobKey) else parse_job_key(key)
        if job_key not in self._jobs:
            raise ScenarioError(f"no job {job_key} to remove")
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
                        "created": utc_text(self.created_at(job)),
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
