"""What a cycle must write to the state bucket, decided from what it found. Pure.

`plan` compares a cycle's detection with the entries as last saved and says which
entries to write, in steps of about `chunk` events (a job's state always with its
events, as the SQLite store's transactions): each job that changed (with its events),
each job gone from the baseline of a shard read in this cycle (with its `removed`, or
deleted without a word), the watcher's own events (into the entry of the shard they are
about, else the member's), and, in the last step, each shard read: its cycle count and
read health.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from watcher.cluster.records import JobRecord, OwnRecord, Pending, ShardRecord
from watcher.detect import Detection
from watcher.events import Event
from watcher.live import same_but_live
from watcher.rules import JobMemory
from watcher.shards import shard_label
from watcher.snapshot import JobKey, JobState
from watcher.source_health import RegionHealth
from watcher.store import outbox

__all__ = ["Cached", "Change", "JobWrite", "NotHeld", "OwnWrite", "ShardWrite", "plan"]


@dataclass(eq=False)
class Cached:
    """An entry of the state bucket as this member last read or wrote it."""

    key: str
    label: str | None  # its shard's label; None for a member's own entry
    revision: int  # its last revision (a tombstone's too); 0: never written
    record: JobRecord | ShardRecord | OwnRecord
    queued: dict[str, int] = field(default_factory=dict)  # event id -> outbox seq

    def job(self) -> JobRecord:
        """The record of a job's entry (TypeError for another entry)."""
        if not isinstance(self.record, JobRecord):
            raise TypeError(f"{self.key} is not a job's entry")
        return self.record

    def shard(self) -> ShardRecord:
        if not isinstance(self.record, ShardRecord):
            raise TypeError(f"{self.key} is not a shard's entry")
        return self.record


class NotHeld(Exception):
    """This member's lease on the shard is not certain (any more): nothing is written."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


@dataclass(frozen=True, slots=True)
class JobWrite:
    label: str
    key: JobKey
    job: JobState | None  # None: gone from the baseline
    memory: JobMemory | None
    events: tuple[Pending, ...] = ()


@dataclass(frozen=True, slots=True)
class ShardWrite:
    label: str
    events: tuple[Pending, ...] = ()
    cycle: int | None = None  # None: as saved
    health: RegionHealth | None = None
    new_health: bool = False  # False: the health as saved


@dataclass(frozen=True, slots=True)
class OwnWrite:
    events: tuple[Pending, ...] = ()


Change = JobWrite | ShardWrite | OwnWrite


def changed_jobs(
    detection: Detection, read: list[str], tables: Mapping[str, Mapping[JobKey, Cached]]
) -> dict[JobKey, tuple[str, JobState | None, JobMemory | None]]:
    """Jobs whose entry is not this state and memory: new, changed, or gone from the
    baseline of a shard read (never those of a shard not read, nor not loaded here). A
    job whose live fields alone moved (`watcher.live`), with the same memory, is not
    written: delays that move at every poll would otherwise rewrite every entry at every
    cycle, and a successor judges a stale live field as the SQLite store's restart does."""
    jobs, memory = detection.baseline.jobs, detection.memory.jobs
    out: dict[JobKey, tuple[str, JobState | None, JobMemory | None]] = {}
    for key, job in jobs.items():
        label = job.shard_label
        table = tables.get(label)
        if table is None:
            continue
        entry = table.get(key)
        mem = memory.get(key)
        record = entry.record if entry is not None else None
        if (
            not isinstance(record, JobRecord)
            or record.job is None
            or not same_but_live(record.job, job)
            or record.memory != mem
        ):
            out[key] = (label, job, mem)
    for label in read:
        for key, entry in tables[label].items():
            record = entry.record
            if isinstance(record, JobRecord) and record.job is not None and key not in jobs:
                out[key] = (label, None, None)
    return out


def plan(
    detection: Detection,
    rows: list[Pending],
    chunk: int,
    tables: Mapping[str, Mapping[JobKey, Cached]],
    health: Callable[[str], RegionHealth | None],
    route: Callable[[Event], str | None],
) -> list[tuple[list[Change], int]]:
    """The steps to save a cycle: (changes, events saved once they are written)."""
    events = detection.events
    owners = [outbox.owner(e) for e in events]
    read = [label for label in detection.baseline.regions if label in tables]
    changed = changed_jobs(detection, read, tables)
    bounds = outbox.chunks(owners, max(1, chunk), first=max(1, chunk // 10))
    steps: list[tuple[list[Change], int]] = []
    done: set[JobKey] = set()
    for n, (a, b) in enumerate(bounds, start=1):
        last = n == len(bounds)
        said: dict[JobKey, list[Pending]] = {}
        shards: dict[str, list[Pending]] = {}
        own: list[Pending] = []
        for event, owner, row in zip(events[a:b], owners[a:b], rows[a:b], strict=True):
            if owner is not None:
                said.setdefault(owner, []).append(row)
            elif (label := route(event)) is not None:
                shards.setdefault(label, []).append(row)
            else:
                own.append(row)
        keys = list(said)
        if last:
            keys += [key for key in changed if key not in done and key not in said]
        changes: list[Change] = []
        for key in keys:
            done.add(key)
            label, job, mem = changed.get(key) or _as_is(detection, key)
            changes.append(JobWrite(label, key, job, mem, tuple(said.get(key, ()))))
        if last:
            cycles = detection.memory.shard_cycles
            for label in read:
                rows_of = tuple(shards.pop(label, ()))
                changes.append(ShardWrite(label, rows_of, cycles.get(label), health(label), True))
        changes += [ShardWrite(label, tuple(rows_of)) for label, rows_of in shards.items()]
        if own:
            changes.append(OwnWrite(tuple(own)))
        steps.append((changes, b))
    return steps


def _as_is(detection: Detection, key: JobKey) -> tuple[str, JobState | None, JobMemory | None]:
    """An event about a job whose state and memory did not move (its entry is written
    again with the event)."""
    label = shard_label(key.account, key.region)
    return label, detection.baseline.jobs.get(key), detection.memory.jobs.get(key)
