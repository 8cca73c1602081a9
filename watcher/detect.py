"""Detection: from two snapshots to the events between them. Pure.

`detect(previous, current, memory, rules, now)` reads no clock, does no I/O and draws no
random numbers: the same inputs always give the same events (with the same ids) and the
same memory. Everything that must outlive one cycle (which delay level a job is at, how
many cycles a delay has held, which precheck failures were already announced, how many
complete listings a job has been missing from) lives in `Memory`, which the store
persists with the baseline in the same transaction as the events.

The rules, in the order they are applied to each job:

- discovered / removed: a job never seen before is `discovered`. A job missing from a
  *complete* listing of its region is `removed` only after `removed_after` consecutive
  complete listings. A region that was not read completely proves nothing: its jobs
  keep their last known state and their memory, untouched.
- status_changed: every change of the normalized status. Entering Failed, PrecheckFailed
  or InitializeFailed is critical, Suspending a warning, anything else info; leaving a
  failure says which (`recovered_from`).
- delay_threshold_crossed: named levels with thresholds. A level is entered when the
  delay reaches its threshold for `delay_for_cycles` consecutive cycles, and left only
  when the delay falls below threshold x (1 - hysteresis). One event per level change,
  up or down, back to "ok" included. Delay is judged only while the job is
  Synchronizing: a frozen delay neither raises nor clears a level.
- precheck_failed: items that newly failed, once per precheck run. A precheck that is run
  again (the job goes back to Prechecking, or the failures clear) may announce again.
- init_failed: schema ("structure") or full-data initialization whose status became
  Failed, once until that stage stops failing.
- On first sight, with `announce_existing`, a job already failed, failing its precheck,
  failing initialization or over a delay level also gets those events, so a consumer
  that starts today learns of yesterday's failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from watcher.events import (
    DELAY_THRESHOLD_CROSSED,
    DISCOVERED,
    INIT_FAILED,
    PRECHECK_FAILED,
    REMOVED,
    STATUS_CHANGED,
    Event,
    Severity,
    deterministic_id,
    format_time,
)
from watcher.snapshot import (
    FAILED,
    INITIALIZE_FAILED,
    PRECHECKING,
    SUSPENDING,
    SYNCHRONIZING,
    JobKey,
    JobState,
    Snapshot,
)
from watcher.snapshot import (
    PRECHECK_FAILED as STATUS_PRECHECK_FAILED,
)

OK = "ok"
FAILURE_STATUSES = frozenset({FAILED, STATUS_PRECHECK_FAILED, INITIALIZE_FAILED})
STAGES = ("structure", "data")


@dataclass(frozen=True, slots=True)
class Rules:
    """Detection parameters (built from `RulesSettings`)."""

    # (level name, threshold seconds), ascending by threshold.
    delay_levels: tuple[tuple[str, float], ...] = (("warning", 60.0), ("critical", 300.0))
    delay_hysteresis: float = 0.1
    delay_for_cycles: int = 1
    announce_existing: bool = True
    removed_after: int = 2

    @classmethod
    def from_thresholds(cls, thresholds: Mapping[str, float], **kwargs: Any) -> Rules:
        levels = tuple(
            (name, int(seconds) if float(seconds).is_integer() else float(seconds))
            for name, seconds in sorted(thresholds.items(), key=lambda item: item[1])
        )
        return cls(delay_levels=levels, **kwargs)

    def severity_of_level(self, level: str) -> Severity:
        if level == OK:
            return "info"
        if level in ("warning", "critical"):
            return level  # type: ignore[return-value]
        names = [name for name, _ in self.delay_levels]
        return "critical" if names and level == names[-1] else "warning"


@dataclass(frozen=True, slots=True)
class JobMemory:
    """What detection remembers about one job between cycles."""

    delay_level: str = OK
    # Consecutive synchronizing cycles with the delay at or above each level's threshold.
    delay_streaks: tuple[tuple[str, int], ...] = ()
    precheck_announced: frozenset[str] = frozenset()
    init_announced: frozenset[str] = frozenset()
    absent: int = 0  # consecutive complete listings without this job

    def to_dict(self) -> dict[str, Any]:
        return {
            "delay_level": self.delay_level,
            "delay_streaks": dict(self.delay_streaks),
            "precheck_announced": sorted(self.precheck_announced),
            "init_announced": sorted(self.init_announced),
            "absent": self.absent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobMemory:
        return cls(
            delay_level=str(data.get("delay_level", OK)),
            delay_streaks=tuple(sorted((data.get("delay_streaks") or {}).items())),
            precheck_announced=frozenset(data.get("precheck_announced") or ()),
            init_announced=frozenset(data.get("init_announced") or ()),
            absent=int(data.get("absent", 0)),
        )


@dataclass(frozen=True, slots=True)
class Memory:
    cycle: int = 0
    jobs: Mapping[JobKey, JobMemory] = field(default_factory=dict)


class Detection(NamedTuple):
    events: list[Event]
    memory: Memory
    # The new baseline: the last known state of every job still tracked (jobs of regions
    # that were not read completely are carried over unchanged).
    baseline: Snapshot


def detect(
    previous: Snapshot | None,
    current: Snapshot,
    memory: Memory,
    rules: Rules,
    now: datetime,
    observed: frozenset[JobKey] = frozenset(),
) -> Detection:
    """Compare the baseline with a fresh snapshot; see the module docstring for the rules.

    `observed`: jobs already judged this cycle by `observe` (page by page, as the listing
    came in; `previous` and `memory` then hold what that found). They are carried over
    as they are, not judged twice.
    """
    cycle = memory.cycle + 1
    before: Mapping[JobKey, JobState] = previous.jobs if previous is not None else {}
    complete = current.complete_regions
    watched = set(current.regions) or {job.region for job in current}
    events: list[Event] = []
    known: dict[JobKey, JobState] = {}
    remembered: dict[JobKey, JobMemory] = {}
    emit = _emitter(events, cycle, now)

    # Jobs present in a completely read region.
    for key, job in current.jobs.items():
        if job.region not in complete:
            continue
        known[key] = job
        mem = memory.jobs.get(key, _DEFAULT)
        if key not in observed:
            mem = _judge(before.get(key), job, mem, rules, emit)
        if mem != _DEFAULT:
            remembered[key] = mem

    # Jobs we knew that this snapshot did not show.
    for key, old in before.items():
        if key in known:
            continue
        if old.region not in watched:
            continue  # the region is no longer configured: forget, without an event
        mem = memory.jobs.get(key, _DEFAULT)
        if old.region in complete:
            absent = mem.absent + 1
            if absent >= rules.removed_after:
                emit(old, REMOVED, "info", {})
                continue
            mem = replace(mem, absent=absent)
        known[key] = old  # carried over: not (yet) proven gone
        if mem != _DEFAULT:
            remembered[key] = mem

    baseline = Snapshot(jobs=known, regions=current.regions, taken_at=current.taken_at)
    return Detection(events, Memory(cycle=cycle, jobs=remembered), baseline)


class Observation(NamedTuple):
    events: list[Event]
    # The jobs judged, with their new memory (None: back to the default, nothing kept).
    jobs: dict[JobKey, tuple[JobState, JobMemory | None]]


def observe(
    before: Mapping[JobKey, JobState],
    jobs: Iterable[JobState],
    memory: Mapping[JobKey, JobMemory],
    cycle: int,
    rules: Rules,
    now: datetime,
) -> Observation:
    """Judge jobs that a consistent page of the listing under way (`cycle`) showed, as
    `detect` judges present jobs; absence is `detect`'s alone, from complete listings.

    Used when events go out page by page (`poll.emit = "page"`); `detect` then gets the
    keys judged here as `observed`.
    """
    events: list[Event] = []
    emit = _emitter(events, cycle, now)
    judged: dict[JobKey, tuple[JobState, JobMemory | None]] = {}
    for job in jobs:
        key = job.key
        mem = _judge(before.get(key), job, memory.get(key, _DEFAULT), rules, emit)
        judged[key] = (job, None if mem == _DEFAULT else mem)
    return Observation(events, judged)


class PageByPage:
    """`detect`, a page at a time (`poll.emit = "page"`). Pure, like detect.

    `judge(page, now)` applies the rules for present jobs to a consistent page of the
    listing under way and returns its events and the jobs whose state or memory moved
    (what must be saved with those events); `finish(current, now)` then runs `detect` on
    the whole listing with what the pages found as the baseline, judging only what no
    page did: absence (complete listings only), and jobs of pages that were not fed.

    A job is judged from the first page it is seen on: if it moves between pages while
    they are read, a later sighting waits for the next cycle (pages arrive out of
    order, so the later sighting might be the older one).
    """

    def __init__(self, previous: Snapshot | None, memory: Memory, rules: Rules) -> None:
        self.jobs: dict[JobKey, JobState] = dict(previous.jobs) if previous is not None else {}
        self.memory: dict[JobKey, JobMemory] = dict(memory.jobs)
        self.seen: set[JobKey] = set()
        self._cycle = memory.cycle
        self._rules = rules

    def judge(self, page: Iterable[JobState], now: datetime) -> Observation:
        fresh = [job for job in page if job.key not in self.seen]
        self.seen.update(job.key for job in fresh)
        found = observe(self.jobs, fresh, self.memory, self._cycle + 1, self._rules, now)
        moved: dict[JobKey, tuple[JobState, JobMemory | None]] = {}
        for key, (job, mem) in found.jobs.items():
            if self.jobs.get(key) is not job or self.memory.get(key) != mem:
                moved[key] = (job, mem)
                self.jobs[key] = job
                if mem is None:
                    self.memory.pop(key, None)
                else:
                    self.memory[key] = mem
        return Observation(found.events, moved)

    def finish(self, current: Snapshot, now: datetime) -> Detection:
        return detect(
            Snapshot(jobs=self.jobs),
            current,
            Memory(cycle=self._cycle, jobs=self.memory),
            self._rules,
            now,
            observed=frozenset(self.seen),
        )


_DEFAULT = JobMemory()


def _emitter(events: list[Event], cycle: int, now: datetime) -> _Emit:
    stamp = format_time(now)
    emitted: dict[JobKey, int] = {}

    def emit(job: JobState, kind: str, severity: Severity, data: dict[str, Any]) -> None:
        # The id covers the job, the cycle, the moment and the event's place among the
        # job's events, so two events of one kind (both init stages failing) stay distinct.
        n = emitted[job.key] = emitted.get(job.key, 0) + 1
        event_id = deterministic_id(str(job.key), kind, str(cycle), stamp, str(n))
        body: Mapping[str, Any] = {
            "job_id": job.job_id,
            "job_name": job.job_name,
            "region": job.region,
            "direction": job.direction,
            "status": job.status,
            **data,
        }
        if kind in (DISCOVERED, REMOVED):
            body = WithJob(body, job)
        events.append(Event(kind, severity, now, body, event_id, job.region, job.job_id))

    return emit


def _judge(
    old: JobState | None, job: JobState, mem: JobMemory, rules: Rules, emit: _Emit
) -> JobMemory:
    """The rules for one job seen present; its new memory."""
    if old is None:
        emit(job, DISCOVERED, "info", {})
        return _first_sight(job, rules, emit)
    if old == job and not mem.delay_streaks and not mem.absent:
        return mem  # unchanged, nothing pending: the fast path
    mem = replace(mem, absent=0)
    _status(old, job, emit)
    mem = _precheck(job, mem, emit)
    mem = _init(job, mem, emit)
    return _delay(job, mem, rules, emit)


class WithJob(Mapping[str, Any]):
    """The data of a `discovered` or `removed` event: the common fields, then `job`, the
    whole normalized job (`JobState.to_dict()`), made when it is read.

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


# The `emit` closure inside detect(): (job, kind, severity, kind-specific data).
_Emit = Callable[[JobState, str, Severity, dict[str, Any]], None]


def _first_sight(job: JobState, rules: Rules, emit: _Emit) -> JobMemory:
    if not rules.announce_existing:
        # Stay quiet, but remember what is already failing so that the next cycle does
        # not announce it as new.
        silent = JobMemory(
            delay_level=_level_for(job.delay_seconds, rules)
            if job.status == SYNCHRONIZING and job.delay_seconds is not None
            else OK,
            precheck_announced=_failed_items(job) if job.status != PRECHECKING else frozenset(),
            init_announced=frozenset(s for s in STAGES if _stage_failed(job, s)),
        )
        return silent
    if job.status in FAILURE_STATUSES:
        emit(
            job,
            STATUS_CHANGED,
            "critical",
            {"previous_status": None, "error_message": job.error_message},
        )
    mem = _precheck(job, JobMemory(), emit)
    mem = _init(job, mem, emit)
    return _delay(job, mem, rules, emit)


def _status(old: JobState, job: JobState, emit: _Emit) -> None:
    if old.status == job.status:
        return
    severity: Severity = "info"
    if job.status in FAILURE_STATUSES:
        severity = "critical"
    elif job.status == SUSPENDING:
        severity = "warning"
    data: dict[str, Any] = {"previous_status": old.status, "error_message": job.error_message}
    if old.status in FAILURE_STATUSES and job.status not in FAILURE_STATUSES:
        data["recovered_from"] = old.status
    emit(job, STATUS_CHANGED, severity, data)


def _failed_items(job: JobState) -> frozenset[str]:
    if job.precheck is None:
        return frozenset()
    return frozenset(item.item_name for item in job.precheck.failed_items)


def _precheck(job: JobState, mem: JobMemory, emit: _Emit) -> JobMemory:
    if job.status == PRECHECKING:
        # A precheck (re-)run in progress: forget what was announced, report when it ends.
        return replace(mem, precheck_announced=frozenset()) if mem.precheck_announced else mem
    failed = _failed_items(job)
    announced = mem.precheck_announced & failed  # an item that passed may fail again later
    new = failed - announced
    if new and job.precheck is not None:
        items = [
            {
                "item_name": item.item_name,
                "error_message": item.error_message,
                "repair_method": item.repair_method,
            }
            for item in job.precheck.failed_items
            if item.item_name in new
        ]
        emit(job, PRECHECK_FAILED, "critical", {"failed_items": items})
    announced |= new
    return (
        mem if announced == mem.precheck_announced else replace(mem, precheck_announced=announced)
    )


def _stage_failed(job: JobState, stage: str) -> bool:
    state = job.structure_init if stage == "structure" else job.data_init
    return state is not None and state.failed


def _init(job: JobState, mem: JobMemory, emit: _Emit) -> JobMemory:
    announced = set(mem.init_announced)
    for stage in STAGES:
        if not _stage_failed(job, stage):
            announced.discard(stage)
            continue
        if stage in announced:
            continue
        state = job.structure_init if stage == "structure" else job.data_init
        message = (state.error_message if state else None) or job.error_message
        emit(job, INIT_FAILED, "critical", {"stage": stage, "error_message": message})
        announced.add(stage)
    frozen = frozenset(announced)
    return mem if frozen == mem.init_announced else replace(mem, init_announced=frozen)


def _level_for(delay: int | None, rules: Rules) -> str:
    """The highest level whose threshold the delay reaches (no streaks, no hysteresis)."""
    level = OK
    for name, threshold in rules.delay_levels:
        if delay is not None and delay >= threshold:
            level = name
    return level


def _delay(job: JobState, mem: JobMemory, rules: Rules, emit: _Emit) -> JobMemory:
    if job.status != SYNCHRONIZING or job.delay_seconds is None:
        # Not synchronizing: the delay is frozen or meaningless; keep the level as it is
        # and start counting afresh when synchronization resumes.
        return replace(mem, delay_streaks=()) if mem.delay_streaks else mem
    delay = job.delay_seconds
    levels = rules.delay_levels
    names = [name for name, _ in levels]
    index = names.index(mem.delay_level) if mem.delay_level in names else -1
    keep = 1.0 - rules.delay_hysteresis

    new_index = index
    if index >= 0 and delay < levels[index][1] * keep:
        new_index = -1
        for j in range(index - 1, -1, -1):
            if delay >= levels[j][1] * keep:
                new_index = j
                break

    streaks = dict(mem.delay_streaks)
    counted = {
        name: streaks.get(name, 0) + 1
        for name, threshold in levels[new_index + 1 :]
        if delay >= threshold
    }
    for j in range(len(levels) - 1, new_index, -1):
        if counted.get(names[j], 0) >= rules.delay_for_cycles:
            new_index = j
            break
    counted = {name: n for name, n in counted.items() if names.index(name) > new_index}

    level = names[new_index] if new_index >= 0 else OK
    if new_index != index:
        rising = new_index > index
        threshold = levels[new_index][1] if rising else levels[index][1]
        previous = names[index] if index >= 0 else OK
        emit(
            job,
            DELAY_THRESHOLD_CROSSED,
            rules.severity_of_level(level),
            {
                "level": level,
                "previous_level": previous,
                "delay_seconds": delay,
                "threshold_seconds": threshold,
                "change": "up" if rising else "down",
            },
        )
    return replace(mem, delay_level=level, delay_streaks=tuple(sorted(counted.items())))
