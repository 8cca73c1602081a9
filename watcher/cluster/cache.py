"""The entries of the state bucket this member works with, as it last read or wrote them,
and every write to them: read, fenced, compare-and-set (`watcher.cluster.state` says why).

`Entries` holds, per shard held, each job's entry and the shard's own; this member's own
entry (and those it took over from members gone); the outbox order of the events that
wait in them; and which entries must be read again before they are judged from (a write
that failed or whose outcome is unknown). Every method runs on the event loop's thread.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.from_thread

from watcher.cluster import kv, records
from watcher.cluster.bucket import Bucket, Entry
from watcher.cluster.changes import Cached, Change, JobWrite, NotHeld, OwnWrite, ShardWrite
from watcher.cluster.records import JobRecord, OwnRecord, Pending, ShardRecord
from watcher.errors import StateWriteError, why
from watcher.events import Event
from watcher.faults import crash_point
from watcher.logs import get_logger
from watcher.shards import DEFAULT_ACCOUNT, Shard, shard_label
from watcher.snapshot import JobKey
from watcher.source_health import RegionHealth
from watcher.wire import Wire

__all__ = ["Entries", "reason"]

log = get_logger("watcher.cluster.state")
_T = TypeVar("_T")
_LOCKS = 64


class Entries:
    def __init__(
        self,
        member: str,
        *,
        holds: Callable[[str], bool],
        health: Callable[[str], RegionHealth | None] = lambda label: None,
        timeout: float = 5.0,
    ) -> None:
        """`holds(label)`: whether this member's lease on a shard is certain now;
        `health(label)`: the shard's read health to save with its cycle."""
        self.member = member
        self.wire = Wire()
        self._holds = holds
        self._health = health
        self._timeout = timeout
        self._bucket: Bucket | None = None
        self._loop = threading.current_thread()
        self._jobs: dict[str, dict[JobKey, Cached]] = {}  # shard label -> its jobs' entries
        self._tombs: dict[str, dict[str, int]] = {}  # shard label -> deleted key -> revision
        self._shards: dict[str, Cached] = {}
        self._own: dict[str, Cached] = {}  # own.<member> -> entry (this member's, and adopted)
        self._queue: dict[int, tuple[Cached, Pending]] = {}  # the outbox, in order
        self._seqs = itertools.count(1)
        self._orders = itertools.count()
        self._cycle = 0
        self._stale: dict[str, Cached] = {}
        self._unsaved: list[tuple[Event, Pending]] = []
        self._dead = 0
        self._locks: list[anyio.Lock] = []
        self._wake: anyio.Event | None = None
        self._settled: anyio.Event | None = None  # set while `_unsaved` is empty
        self._said: set[str] = set()
        self._progress: anyio.Event | None = None  # set when events were acknowledged

    # --- wiring --------------------------------------------------------------------------

    def attach(self, bucket: Bucket) -> None:
        """The state bucket, once connected (on the event loop)."""
        self._bucket = bucket
        self._loop = threading.current_thread()
        self._locks = [anyio.Lock() for _ in range(_LOCKS)]
        self._wake = anyio.Event()
        self._settled = anyio.Event()
        if self._unsaved:  # said before the connection (`started`): written once started
            self._wake.set()
        else:
            self._settled.set()

    @property
    def attached(self) -> bool:
        return self._bucket is not None

    def loaded(self) -> frozenset[str]:
        """The shards whose state is here (held, or being handed over)."""
        return frozenset(self._jobs)

    def _need(self) -> Bucket:
        if self._bucket is None:
            raise StateWriteError("not connected to the cluster's state bucket yet")
        return self._bucket

    def _on_loop(self) -> bool:
        return threading.current_thread() is self._loop

    def _sync(self, fn: Callable[..., _T], *args: Any) -> _T:
        return fn(*args) if self._on_loop() else anyio.from_thread.run_sync(fn, *args)

    def _async(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        async def call() -> _T:
            return await fn(*args)

        return anyio.from_thread.run(call)

    # --- taking a shard, letting it go ----------------------------------------------------

    async def _read(self, keys: str) -> list[Entry]:
        """Every entry matching `keys`: a consumer's pass, then what the stream leader has
        past the newest of those (a consumer on a server lagging behind the leader could
        have missed the last writes; it cannot have missed earlier ones)."""
        bucket = self._need()
        found = {e.key: e for e in await bucket.read_all(self._timeout * 6, keys=keys)}
        newest = max((e.revision for e in found.values()), default=0)
        for entry in await bucket.after(newest, keys):
            if entry.key not in found or found[entry.key].revision < entry.revision:
                found[entry.key] = entry
        return list(found.values())

    async def adopt(self, label: str) -> ShardRecord:
        """Read a shard's entries (its lease was just taken); its waiting events are queued
        for the publisher. Returns the shard's own record (cycle count, health)."""
        shard = Shard.parse(label)
        bucket = self._need()
        entries = await self._read(records.jobs_of(shard.account, shard.region))
        raw = await bucket.last(records.shard_key(shard.account, shard.region))
        table: dict[JobKey, Cached] = {}
        tombs: dict[str, int] = {}
        for found in entries:
            record = None if found.tombstone else self._decode(found, records.decode_job)
            if record is None:
                tombs[found.key] = found.revision
                continue
            key = record.job.key if record.job is not None else records.job_key_of(found.key)
            table[key] = Cached(found.key, label, found.revision, record)
        shard_record = ShardRecord()
        if raw is not None and not raw.tombstone:
            shard_record = self._decode(raw, records.decode_shard) or ShardRecord()
        self._jobs[label], self._tombs[label] = table, tombs
        shard_key = records.shard_key(shard.account, shard.region)
        self._shards[label] = Cached(shard_key, label, raw.revision if raw else 0, shard_record)
        self._enqueue_all([*table.values(), self._shards[label]])
        return shard_record

    def _decode(self, entry: Entry, decode: Callable[[bytes], _T]) -> _T | None:
        try:
            return decode(entry.value)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("state.entry_unreadable", key=entry.key, error=why(exc))
            return None

    def drop(self, label: str) -> None:
        """Forget a shard (released, or its lease lost): its events wait in its entries
        for its next holder."""
        self._jobs.pop(label, None)
        self._tombs.pop(label, None)
        self._shards.pop(label, None)
        for seq in [s for s, (entry, _) in self._queue.items() if entry.label == label]:
            del self._queue[seq]

    def waiting(self, label: str) -> int:
        """Events of a shard not yet acknowledged by JetStream."""
        return sum(1 for entry, _ in self._queue.values() if entry.label == label)

    def jobs_in(self, label: str) -> int:
        return sum(1 for e in self._jobs.get(label, {}).values() if e.job().job is not None)

    async def flushed(self, label: str) -> None:
        """Return once no event of the shard waits (the caller bounds the wait)."""
        while self.waiting(label):
            if self._progress is None or self._progress.is_set():
                self._progress = anyio.Event()
            await self._progress.wait()

    async def start(self, live: Collection[str]) -> None:
        """Read this member's own entry, and those of members no longer alive (`live`:
        the members the leases bucket shows): their events are published from here."""
        for found in await self._read(f"{records.OWN}.>"):
            member = records.member_of(found.key)
            if member != self.member and (member in live or found.tombstone):
                continue
            record = None if found.tombstone else self._decode(found, records.decode_own)
            self._own[found.key] = Cached(
                found.key, None, found.revision, record or OwnRecord(member)
            )
        mine = records.own_key(self.member)
        self._own.setdefault(mine, Cached(mine, None, 0, OwnRecord(self.member)))
        self._enqueue_all(list(self._own.values()))
        self._dead = sum(1 for e in await self._read(f"{records.DEAD}.>") if not e.tombstone)

    # --- the outbox's order ----------------------------------------------------------------

    def _enqueue(self, entry: Cached) -> None:
        for pending in entry.record.pending:
            if pending.id not in entry.queued:
                seq = next(self._seqs)
                entry.queued[pending.id] = seq
                self._queue[seq] = (entry, pending)

    def _enqueue_all(self, entries: Sequence[Cached]) -> None:
        """Queue what waits in entries just read, in about the order it was saved."""
        waiting = sorted(
            ((p.order, n, e, p) for n, e in enumerate(entries) for p in e.record.pending),
            key=lambda item: (item[0], item[1]),
        )
        for _, _, entry, pending in waiting:
            if pending.id not in entry.queued:
                seq = next(self._seqs)
                entry.queued[pending.id] = seq
                self._queue[seq] = (entry, pending)

    # --- writing ---------------------------------------------------------------------------

    def _lock(self, key: str) -> anyio.Lock:
        return self._locks[hash(key) % len(self._locks)]

    def _ours(self, entry: Cached) -> bool:
        label = entry.label
        return label is None or (label in self._jobs and self._holds(label))

    async def _put(
        self, entry: Cached, change: Callable[[Any], Any], written: list[Cached] | None = None
    ) -> None:
        """Write `change(the entry's record)` over the revision last known, if the shard
        is certainly this member's; the entry follows on success (its events go to the
        publisher, or into `written` for the caller to hand over), is stale otherwise."""
        bucket = self._need()
        async with self._lock(entry.key):
            if not self._ours(entry):
                raise NotHeld(entry.label or "")
            record = change(entry.record)
            value = records.encode_record(record)
            try:
                revision = await kv.put(bucket, entry.key, value, entry.revision, self._timeout)
            except BaseException:
                self._stale[entry.key] = entry
                raise
            entry.record, entry.revision = record, revision
            if written is None:
                self._enqueue(entry)
            else:
                written.append(entry)

    async def _delete(self, entry: Cached) -> None:
        bucket = self._need()
        async with self._lock(entry.key):
            if not self._ours(entry) or entry.record.pending:
                return
            try:
                entry.revision = await kv.delete(bucket, entry.key, entry.revision, self._timeout)
            except BaseException:
                self._stale[entry.key] = entry
                raise
        if isinstance(entry.record, JobRecord) and entry.label in self._jobs:
            key = records.job_key_of(entry.key)
            self._jobs[entry.label].pop(key, None)
            self._tombs[entry.label][entry.key] = entry.revision
        elif isinstance(entry.record, OwnRecord) and entry.record.member != self.member:
            self._own.pop(entry.key, None)

    async def _write(self, change: Change, written: list[Cached]) -> None:
        if isinstance(change, JobWrite):
            await self._write_job(change, written)
        elif isinstance(change, ShardWrite):
            await self._write_shard(change, written)
        else:
            await self._write_own(change, written)

    async def _write_job(self, change: JobWrite, written: list[Cached]) -> None:
        table = self._jobs.get(change.label)
        if table is None or not self._holds(change.label):
            raise NotHeld(change.label)
        entry = table.get(change.key)
        if entry is None:
            if change.job is None and not change.events:
                return  # forgotten, and never saved
            key = records.job_key(change.key)
            entry = Cached(
                key, change.label, self._tombs[change.label].get(key, 0), JobRecord(None, None)
            )
        elif change.job is None and not change.events and not entry.record.pending:
            await self._delete(entry)  # forgotten without a word (a key moved, a type unlisted)
            return

        def apply(record: JobRecord) -> JobRecord:
            return JobRecord(change.job, change.memory, record.pending + change.events)

        await self._put(entry, apply, written)
        if table.get(change.key) is not entry and self._jobs.get(change.label) is table:
            table[change.key] = entry
            self._tombs[change.label].pop(entry.key, None)

    async def _write_shard(self, change: ShardWrite, written: list[Cached]) -> None:
        entry = self._shards.get(change.label)
        if entry is None:
            raise NotHeld(change.label)

        def apply(record: ShardRecord) -> ShardRecord:
            cycle = record.cycle if change.cycle is None else change.cycle
            health = change.health if change.new_health else record.health
            return ShardRecord(cycle, health, record.pending + change.events)

        await self._put(entry, apply, written)

    async def _write_own(self, change: OwnWrite, written: list[Cached]) -> None:
        key = records.own_key(self.member)
        entry = self._own.get(key)
        if entry is None:
            raise StateWriteError("this member's entry in the state bucket is not read yet")

        def apply(record: OwnRecord) -> OwnRecord:
            return OwnRecord(self.member, record.pending + change.events)

        await self._put(entry, apply, written)

    async def _apply(self, changes: Sequence[Change]) -> None:
        """Write `changes` at once; StateWriteError naming the first failure if any failed
        (those that succeeded stay written). Their events go to the publisher together,
        once all are written (as a transaction's would)."""
        if not changes:
            return
        written: list[Cached] = []
        outcomes = await kv.write_all([partial(self._write, c, written) for c in changes])
        said = any(p.id not in e.queued for e in written for p in e.record.pending)
        crash_point("state_written", said)
        for entry in written:
            self._enqueue(entry)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            raise StateWriteError(
                f"{len(failed)} of {len(changes)} entries of the state bucket not saved "
                f"(read again before the next cycle): {reason(failed[0])}"
            )

    async def _refresh(self) -> None:
        """Read stale entries again from the stream leader (a write failed or its outcome
        is unknown): what the next cycle judges from is what is saved."""
        stale, self._stale = self._stale, {}
        bucket = self._need()
        for key, entry in stale.items():
            if entry.label is not None and entry.label not in self._jobs:
                continue
            try:
                found = await bucket.last(key)
            except Exception:
                self._stale[key] = entry
                raise
            self._reread(entry, found)

    def _reread(self, entry: Cached, found: Entry | None) -> None:
        entry.revision = found.revision if found is not None else 0
        if isinstance(entry.record, JobRecord):
            label = entry.label or ""
            job_key = records.job_key_of(entry.key)
            record = None
            if found is not None and not found.tombstone:
                record = self._decode(found, records.decode_job)
            if record is None:
                self._jobs[label].pop(job_key, None)
                self._tombs[label][entry.key] = entry.revision
                return
            entry.record = record
            self._jobs[label][job_key] = entry
        elif found is not None and not found.tombstone:
            decode = records.decode_shard if entry.label else records.decode_own
            entry.record = self._decode(found, decode) or entry.record
        entry.queued = {i: s for i, s in entry.queued.items() if s in self._queue}
        self._enqueue(entry)

    def _route(self, event: Event) -> str | None:
        region = event.data.get("region")
        if not isinstance(region, str):
            return None
        label = shard_label(str(event.data.get("account") or DEFAULT_ACCOUNT), region)
        return label if label in self._shards and self._holds(label) else None

    async def _save_events(self, routed: Sequence[tuple[Event, Pending]]) -> None:
        by_shard: dict[str | None, list[Pending]] = {}
        for event, row in routed:
            by_shard.setdefault(self._route(event), []).append(row)
        changes: list[Change] = [
            ShardWrite(label, tuple(rows)) if label is not None else OwnWrite(tuple(rows))
            for label, rows in by_shard.items()
        ]
        await self._apply(changes)

    async def _acknowledge(self, seqs: list[int]) -> None:
        touched: dict[int, tuple[Cached, set[str]]] = {}
        for seq in seqs:
            item = self._queue.pop(seq, None)
            if item is None:
                continue
            entry, event = item
            entry.queued.pop(event.id, None)
            touched.setdefault(id(entry), (entry, set()))[1].add(event.id)
        if self._progress is not None:
            self._progress.set()
        clears = [partial(self._clear, entry, ids) for entry, ids in touched.values()]
        for outcome in await kv.write_all(clears):
            if isinstance(outcome, BaseException) and not isinstance(outcome, NotHeld):
                # Published all the same: cleared by the next write of the entry, or
                # published again (JetStream drops the copy) by whoever reads it next.
                self._say_once("state.clear_failed", reason(outcome))

    async def _clear(self, entry: Cached, ids: set[str]) -> None:
        """Take published events out of their entry (at once here; in the bucket by a
        fenced write); an entry left with nothing to say is deleted."""
        async with self._lock(entry.key):
            entry.record = replace(
                entry.record, pending=tuple(p for p in entry.record.pending if p.id not in ids)
            )
        if not self._ours(entry):
            return
        record = entry.record
        gone = isinstance(record, JobRecord) and record.job is None
        foreign = isinstance(record, OwnRecord) and record.member != self.member
        if (gone or foreign) and not record.pending:
            await self._delete(entry)
        else:
            await self._put(entry, lambda current: current)

    def _say_once(self, what: str, reason: str) -> None:
        if reason not in self._said:
            self._said.add(reason)
            log.warning(what, reason=reason)


def reason(exc: BaseException) -> str:
    if isinstance(exc, NotHeld):
        return (
            f"the lease of shard {exc.label} is no longer certain: its changes are left to "
            "its next holder"
        )
    if isinstance(exc, kv.WrongRevision):
        return f"{exc} was written meanwhile by another member"
    return why(exc)
