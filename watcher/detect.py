"""Detection: from two snapshots to the events between them. Pure.

`detect(previous, current, memory, rules, now)` reads no clock, does no I/O and draws no
random numbers: the same inputs always give the same events (with the same ids) and the
same memory. Everything that must outlive one cycle lives in `Memory` (each rule's part,
see `watcher.rules`), which the store persists with the baseline in the same transaction
as the events.

What detect itself decides, around the rules:

- which jobs are judged: those present in a *completely* read region (`Rules.judge`),
  and those its complete listing no longer shows (`Rules.missing`: presence alone). A
  region that was not read completely proves nothing: its jobs keep their last known
  state and their memory, untouched. A region no longer configured is forgotten quietly.
- what an event is: the rule's kind and data, the job's common fields, the observation
  time, and an id that depends on the transition alone: the job, the kind, the cycle
  (its shard's, where `Memory.shard_cycles` keeps one per shard: several replicas), the
  event's place among the job's events (two events of one kind in a cycle stay distinct)
  and a digest of the state and memory the job was judged from. Not the moment, nor
  anything of the process that saw it: whoever judges a job from the same saved state
  in the same cycle says the same ids, and a cycle number used again after a crash
  (its end was never saved) cannot repeat an id, since whatever was saved of it moved
  the job's state on.
- which events are silenced: `silences` (data: the silences and maintenance windows
  known when the cycle ran, `watcher.silencing`) says which one covers a job at `now`;
  its events carry that id (`Event.silenced`), and the rules learn it through `say`
  (reminders need to know when a silence ended). Events a rule held back (a flapping
  job's) are counted in `held`.

`observe` and `PageByPage` judge present jobs a page at a time (`poll.emit = "page"`);
`detect` then does the rest (absence), from the complete listing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from watcher.events import Event, WithJob, deterministic_id
from watcher.kinds import Kind, Severity
from watcher.rules import JobMemory, Memory, Rules, Say
from watcher.silencing import NO_SILENCES, Silencing
from watcher.snapshot import JobKey, JobState, Snapshot

__all__ = [
    "Detection",
    "JobMemory",
    "Memory",
    "Observation",
    "PageByPage",
    "Rules",
    "detect",
    "observe",
]

_BLANK = JobMemory()
_NONE_HELD: Mapping[str, int] = MappingProxyType({})
_NO_SHARD_CYCLES: Mapping[str, int] = MappingProxyType({})


class Detection(NamedTuple):
    events: list[Event]
    memory: Memory
    # The new baseline: the last known state of every job still tracked (jobs of regions
    # that were not read completely are carried over unchanged).
    baseline: Snapshot
    held: Mapping[str, int] = _NONE_HELD  # events held back by the rules, by kind


def detect(
    previous: Snapshot | None,
    current: Snapshot,
    memory: Memory,
    rules: Rules,
    now: datetime,
    observed: frozenset[JobKey] = frozenset(),
    silences: Silencing = NO_SILENCES,
) -> Detection:
    """Compare the baseline with a fresh snapshot; see the module docstring.

    `observed`: jobs already judged this cycle by `observe` (page by page, as the listing
    came in; `previous` and `memory` then hold what that found). They are carried over
    as they are, not judged twice. `silences`: what covers which job at `now`.
    """
    cycle = memory.cycle + 1
    before: Mapping[JobKey, JobState] = previous.jobs if previous is not None else {}
    complete = current.complete_regions
    provable = current.absence_regions  # complete, and no record left unread
    outcomes = current.regions
    watched = set(outcomes) or {job.shard_label for job in current}
    before, jobs_memory = adopt(before, memory.jobs, current.jobs, complete)
    shard_cycles = next_shard_cycles(memory, outcomes)
    events = _Events(cycle, now, silences, shard_cycles)
    known: dict[JobKey, JobState] = {}
    remembered: dict[JobKey, JobMemory] = {}

    for key, job in current.jobs.items():  # present in a completely read shard
        if job.shard_label not in complete:
            continue
        known[key] = job
        mem = jobs_memory.get(key, _BLANK)
        if key not in observed:
            old = before.get(key)
            mem = rules.judge(old, job, mem, events.about(job, old, mem))
        if mem:
            remembered[key] = mem

    for key, old in before.items():  # known, but not in this snapshot
        shard = old.shard_label
        if key in known or shard not in watched:
            continue  # a shard no longer configured: forgotten, without an event
        mem = jobs_memory.get(key, _BLANK)
        if shard in complete and old.job_type not in outcomes[shard].job_types:
            continue  # a job type no longer listed: forgotten, without an event
        if shard in provable:
            kept = rules.missing(old, mem, events.about(old, old, mem))
            if kept is None:
                continue  # removed
            mem = kept
        known[key] = old  # carried over: not (yet) proven gone
        if mem:
            remembered[key] = mem

    baseline = Snapshot(jobs=known, regions=current.regions, taken_at=current.taken_at)
    after = Memory(cycle=cycle, jobs=remembered, shard_cycles=shard_cycles)
    return Detection(events.said, after, baseline, events.held)


def next_shard_cycles(memory: Memory, outcomes: Iterable[str]) -> Mapping[str, int]:
    """The shards' own cycle numbers after a cycle that read `outcomes` (only where
    `memory` keeps them: several replicas)."""
    if not memory.shard_cycles:
        return memory.shard_cycles
    counts = dict(memory.shard_cycles)
    for label in outcomes:
        counts[label] = counts.get(label, 0) + 1
    return counts


def adopt(
    before: Mapping[JobKey, JobState],
    memory: Mapping[JobKey, JobMemory],
    current: Mapping[JobKey, JobState],
    complete: frozenset[str] | None = None,
) -> tuple[Mapping[JobKey, JobState], Mapping[JobKey, JobMemory]]:
    """The baseline and memory with known jobs moved to the key another API shows them
    under, so a change of `dts.api` neither removes nor rediscovers a job.

    The legacy listing's SynchronizationJobId is the id of the DTS *instance*; with
    DescribeDtsJobs a job is its `DtsJobId` and carries the instance id apart
    (`instance_id`). So two keys name the same job when they agree on account, region,
    direction and job type, and their instance ids (a legacy job's own id) are equal. A
    job of `current` (of a complete shard, if `complete` is given) that the baseline does
    not know takes over the state and memory of such a job of the baseline that `current`
    does not show. Only then: the steady state costs one pass over the keys.
    """
    # Over `current` (a page, page by page: `keys() - keys()` would walk the whole
    # baseline for each page).
    fresh = [key for key in current if key not in before]
    if complete is not None:
        fresh = [key for key in fresh if current[key].shard_label in complete]
    if not fresh:
        return before, memory
    missing = {_identity(before[key]): key for key in before.keys() - current.keys()}
    moves = {
        key: old
        for key in fresh
        if (old := missing.get(_identity(current[key]))) is not None and old != key
    }
    if not moves:
        return before, memory
    moved_before, moved_memory = dict(before), dict(memory)
    for key, old in moves.items():
        moved_before[key] = moved_before.pop(old)
        if old in moved_memory:
            moved_memory[key] = moved_memory.pop(old)
    return moved_before, moved_memory


def _identity(job: JobState) -> tuple[str, str, str, str, str]:
    return (job.account, job.region, job.direction, job.job_type, job.instance_id or job.job_id)


class Observation(NamedTuple):
    events: list[Event]
    # The jobs judged, with their new memory (None: back to the blank, nothing kept).
    jobs: dict[JobKey, tuple[JobState, JobMemory | None]]
    held: Mapping[str, int] = _NONE_HELD  # events held back by the rules, by kind


def observe(
    before: Mapping[JobKey, JobState],
    jobs: Iterable[JobState],
    memory: Mapping[JobKey, JobMemory],
    cycle: int,
    rules: Rules,
    now: datetime,
    silences: Silencing = NO_SILENCES,
    shard_cycles: Mapping[str, int] = _NO_SHARD_CYCLES,
) -> Observation:
    """Judge jobs that a consistent page of the listing under way (`cycle`; each
    shard's own in `shard_cycles`, where kept) showed, as `detect` judges present jobs;
    absence is `detect`'s alone, from complete listings."""
    events = _Events(cycle, now, silences, shard_cycles)
    judged: dict[JobKey, tuple[JobState, JobMemory | None]] = {}
    for job in jobs:
        key = job.key
        old, mem = before.get(key), memory.get(key, _BLANK)
        mem = rules.judge(old, job, mem, events.about(job, old, mem))
        judged[key] = (job, mem or None)
    return Observation(events.said, judged, events.held)


class PageByPage:
    """`detect`, a page at a time (`poll.emit = "page"`). Pure, like detect.

    `judge(page, now)` applies the rules for present jobs to a consistent page of the
    listing under way and returns its events and the jobs they are about, with their new
    state and memory (what must be saved with those events before they go out; a job
    whose state or memory moved without a word, a delay that moved, a stall being timed,
    is in the baseline `finish` gives, and saved with the rest of the cycle: one
    transaction, not one per page); `finish(current, now)` then runs `detect` on
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
        self._memory = memory
        self._rules = rules

    def judge(
        self, page: Iterable[JobState], now: datetime, silences: Silencing = NO_SILENCES
    ) -> Observation:
        fresh = [job for job in page if job.key not in self.seen]
        self.seen.update(job.key for job in fresh)
        shown = {job.key: job for job in fresh}
        # A job another API showed under another key (see `adopt`), unless that key was
        # seen on a page of this listing: it takes over that key's state and memory.
        jobs, memory = adopt(self.jobs, self.memory, shown)
        if jobs is not self.jobs and not (self.jobs.keys() - jobs.keys()) & self.seen:
            self.jobs, self.memory = dict(jobs), dict(memory)
        cycles = {label: n + 1 for label, n in self._memory.shard_cycles.items()}
        found = observe(
            self.jobs, fresh, self.memory, self._cycle + 1, self._rules, now, silences, cycles
        )
        spoke = {_about(event) for event in found.events}
        moved: dict[JobKey, tuple[JobState, JobMemory | None]] = {}
        for key, (job, mem) in found.jobs.items():
            if self.jobs.get(key) is job and self.memory.get(key) == mem:
                continue
            self.jobs[key] = job
            if mem is None:
                self.memory.pop(key, None)
            else:
                self.memory[key] = mem
            if key in spoke:
                moved[key] = (job, mem)  # saved with its events; the others at `finish`
        return Observation(found.events, moved, found.held)

    def finish(
        self, current: Snapshot, now: datetime, silences: Silencing = NO_SILENCES
    ) -> Detection:
        return detect(
            Snapshot(jobs=self.jobs),
            current,
            Memory(cycle=self._cycle, jobs=self.memory, shard_cycles=self._memory.shard_cycles),
            self._rules,
            now,
            observed=frozenset(self.seen),
            silences=silences,
        )


def _about(event: Event) -> JobKey:
    """The job a job event is about (its key, from the common fields)."""
    data = event.data
    return JobKey(str(event.region), str(event.job_id), data["direction"], data["account"])


class _Events:
    """The events of one cycle (or page), built from what the rules say."""

    def __init__(
        self,
        cycle: int,
        now: datetime,
        silences: Silencing = NO_SILENCES,
        shard_cycles: Mapping[str, int] = _NO_SHARD_CYCLES,
    ) -> None:
        self.said: list[Event] = []
        self.held: Counter[str] = Counter()
        self._cycle = str(cycle)
        self._shard_cycles = {label: str(n) for label, n in shard_cycles.items()}
        self._now = now
        self._silences = silences
        self._per_job: dict[JobKey, int] = {}

    def about(self, job: JobState, old: JobState | None = None, mem: JobMemory = _BLANK) -> Say:
        """`say` for the rules judging `job`, known before as `old` with memory `mem`."""
        return _JobVoice(self, job, old, mem)

    def add(
        self,
        voice: _JobVoice,
        kind: Kind,
        data: dict[str, Any],
        severity: Severity | None,
    ) -> None:
        # The id covers the transition alone (see the module's docstring): the job, the
        # kind, its shard's cycle, the event's place among the job's events (two events
        # of one kind, both init stages failing, stay distinct) and what it was judged
        # from. Never the moment: another replica judging the same saved state says the
        # same id.
        job = voice.job
        n = self._per_job[job.key] = self._per_job.get(job.key, 0) + 1
        cycle = self._shard_cycles.get(job.shard_label, self._cycle)
        event_id = deterministic_id(job.key.encode(), kind.name, cycle, str(n), voice.prior())
        body: Mapping[str, Any] = {
            "job_id": job.job_id,
            "job_name": job.job_name,
            "region": job.region,
            "direction": job.direction,
            "status": job.status,
            "job_type": job.job_type,
            "account": job.account,
            **data,
        }
        if kind.carries_job:
            body = WithJob(body, job)
        level = severity if severity is not None else kind.severity(body)
        self.said.append(
            Event(
                kind.name, level, self._now, body, event_id, job.region, job.job_id, voice.silenced
            )
        )

    def covering(self, job: JobState) -> str | None:
        return self._silences.covering(job, self._now) if self._silences else None


def _digest(job: JobState | None, mem: JobMemory) -> str:
    """A short digest of what a job was judged from: its saved state and memory ("-" for
    a job never seen). Keys sorted: the same values give the same digest wherever they
    were decoded."""
    if job is None and not mem:
        return "-"
    value = [job.to_dict() if job is not None else None, mem.to_dict()]
    try:
        blob = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson refuses (an integer beyond 64 bits): the json module
        blob = json.dumps(value, sort_keys=True, default=str).encode("utf-8", "replace")
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


class _JobVoice:
    """`say` about one job: its events, the moment, the silence covering it, and what it
    was judged from (for the events' ids)."""

    __slots__ = ("_digest", "_events", "_mem", "_old", "_silenced", "job")
    _UNKNOWN: Any = object()

    def __init__(
        self, events: _Events, job: JobState, old: JobState | None, mem: JobMemory
    ) -> None:
        self._events = events
        self.job = job
        self._old = old
        self._mem = mem
        self._silenced: Any = self._UNKNOWN
        self._digest: str | None = None

    def prior(self) -> str:
        if self._digest is None:
            self._digest = _digest(self._old, self._mem)
        return self._digest

    @property
    def now(self) -> datetime:
        return self._events._now

    @property
    def silenced(self) -> str | None:
        if self._silenced is self._UNKNOWN:
            self._silenced = self._events.covering(self.job)
        silenced: str | None = self._silenced
        return silenced

    def __call__(self, kind: Kind, data: dict[str, Any], severity: Severity | None = None) -> None:
        self._events.add(self, kind, data, severity)

    def held(self, kind: Kind) -> None:
        self._events.held[kind.name] += 1
