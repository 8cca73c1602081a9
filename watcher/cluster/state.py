"""The shards' state in JetStream, with several replicas: `ClusterState`.

It is what the SQLite store is for one process (the cycle's `State`, the publisher's
`Outbox`, `watcher.store.protocol`), kept in the state bucket (`records` says what each
entry holds) for the shards this member holds, so that whoever holds a shard next
continues from it: no re-discovery, rule memory kept, the events of the last changes
published by whoever comes next if they were not yet.

**One write per job, fenced.** A job's new state and the events it caused are one entry,
written with the revision this member last read or wrote as the expected one (`kv.put`):
a write from a stale view fails instead of overwriting what another member saved. And
before each write, and each batch handed to the publisher, this member's lease on the
shard must be certain (`holds`, the leases' fence). A write that fails, or whose outcome
is unknown (a timeout), marks its entry stale: it is read again from the stream leader
before the next cycle judges from it.

**The outbox is the entries themselves.** Each entry's events wait in it until JetStream
acknowledged them; the publisher then clears them (another fenced write; a job gone from
DTS whose `removed` went out is deleted). A member that takes a shard over reads its
entries and publishes what waits there with the same ids, and JetStream's duplicate
window drops what the previous holder had in fact stored. The watcher's own events go
into the entry of the shard they are about, or into the member's own entry (`own.<name>`);
own entries of members gone are published by the next member to start.

**Threads.** The cycle and the publisher call from worker threads; everything here runs
on the event loop's thread (`anyio.from_thread`), so the caches need no locks of their
own. `add_events` from the loop's thread itself (the service's own events) cannot wait:
they are written by `run()` right after, and published once written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime

import anyio

from watcher.cluster import records
from watcher.cluster.cache import Entries, log, reason
from watcher.cluster.changes import Change, JobWrite, ShardWrite, plan
from watcher.cluster.records import Pending
from watcher.detect import Detection
from watcher.errors import StateWriteError
from watcher.events import Event
from watcher.rules import JobMemory, Memory
from watcher.snapshot import JobKey, JobState, Snapshot
from watcher.store import outbox
from watcher.store.outbox import OutboxEntry

__all__ = ["ClusterState"]


class ClusterState(Entries):
    """The shared state (the cycle's `State`, the publisher's `Outbox`) of the shards this
    member holds."""

    # --- the cycle's side (watcher.store.State) -------------------------------------------------

    def load(self) -> tuple[Snapshot, Memory]:
        if self.attached and not self._on_loop():
            self._async(self._refresh)
        return self._sync(self._assemble)

    def _assemble(self) -> tuple[Snapshot, Memory]:
        jobs: dict[JobKey, JobState] = {}
        memory: dict[JobKey, JobMemory] = {}
        for table in self._jobs.values():
            for key, entry in table.items():
                record = entry.job()
                if record.job is not None:
                    jobs[key] = record.job
                    if record.memory:
                        memory[key] = record.memory
        cycles = {label: e.shard().cycle for label, e in self._shards.items()}
        return Snapshot(jobs=jobs), Memory(cycle=self._cycle, jobs=memory, shard_cycles=cycles)

    def _rows(self, events: Sequence[Event], prefix: str) -> list[Pending]:
        """The events as they will be published (made in the caller's thread)."""
        millis = int(time.time() * 1000)
        return [
            Pending(id_, subject, payload, (millis, next(self._orders)))
            for id_, subject, payload in outbox.rows(events, prefix, self.wire)
        ]

    def commit_steps(
        self, detection: Detection, subject_prefix: str, chunk: int = 1000
    ) -> Iterator[int]:
        rows = self._rows(detection.events, subject_prefix)
        if self.attached:
            self._async(self._refresh)
        steps = self._sync(self._plan, detection, rows, chunk)
        for changes, saved in steps:
            self._async(self._apply, changes)
            yield saved
        self._cycle = detection.memory.cycle

    def _plan(
        self, detection: Detection, rows: list[Pending], chunk: int
    ) -> list[tuple[list[Change], int]]:
        return plan(detection, rows, chunk, self._jobs, self._health, self._route)

    def save_page(
        self,
        jobs: Mapping[JobKey, tuple[JobState, JobMemory | None]],
        events: Sequence[Event],
        subject_prefix: str,
    ) -> bool:
        rows = self._rows(events, subject_prefix)
        changes = self._sync(self._page, jobs, events, rows)
        if not changes:
            return False
        self._async(self._apply, changes)
        return True

    def _page(
        self,
        jobs: Mapping[JobKey, tuple[JobState, JobMemory | None]],
        events: Sequence[Event],
        rows: list[Pending],
    ) -> list[Change]:
        by_owner: dict[JobKey, list[Pending]] = {}
        for event, row in zip(events, rows, strict=True):
            owner = outbox.owner(event)
            if owner is not None:
                by_owner.setdefault(owner, []).append(row)
        changes: list[Change] = []
        for key, (job, mem) in jobs.items():
            entry = self._jobs.get(job.shard_label, {}).get(key)
            said = tuple(by_owner.pop(key, ()))
            record = entry.job() if entry is not None else None
            if said or record is None or record.job != job or record.memory != mem:
                changes.append(JobWrite(job.shard_label, key, job, mem, said))
        return changes

    def add_events(self, events: Sequence[Event], subject_prefix: str) -> None:
        """The watcher's own events: into the entry of the shard they are about, else this
        member's. From the loop's thread they are written by `run` (soon after)."""
        routed = list(zip(events, self._rows(events, subject_prefix), strict=True))
        if self._on_loop():
            self._unsaved.extend(routed)
            if self._wake is not None:
                self._wake.set()
            if self._settled is not None and self._settled.is_set():
                self._settled = anyio.Event()
            return
        self._async(self._save_events, routed)

    async def say(self, events: Sequence[Event], prefix: str) -> None:
        """Save the watcher's own events now (on the loop: shard_acquired, shard_released)."""
        await self._save_events(list(zip(events, self._rows(events, prefix), strict=True)))

    async def run(self) -> None:
        """Write the events `add_events` got on the loop's thread, until cancelled; while
        the bucket refuses, retry (they are published once written)."""
        pause = 0.2
        while True:
            assert self._wake is not None
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._unsaved:
                batch, self._unsaved = self._unsaved, []
                try:
                    await self._refresh()
                    await self._save_events(batch)
                    pause = 0.2
                except Exception as exc:  # NATS away, a leader election: later
                    self._unsaved[:0] = batch
                    log.warning("state.events_not_saved", reason=reason(exc), retry_in=pause)
                    await anyio.sleep(pause)
                    pause = min(pause * 2, 5.0)
            if self._settled is not None:
                self._settled.set()

    async def settle(self, within: float) -> bool:
        """Wait (at most `within` seconds) for the events `run` has to write; True if none
        is left."""
        if self._unsaved and self._settled is not None:
            with anyio.move_on_after(within):
                await self._settled.wait()
        return not self._unsaved

    async def release(self, label: str, events: Sequence[Event], prefix: str) -> None:
        """Before a shard is handed over: its cycle count and health, with `events`
        (shard_released), saved in its entry."""
        rows = tuple(self._rows(events, prefix))
        cycle = self._shards[label].shard().cycle
        change = ShardWrite(label, rows, cycle, self._health(label), True)
        await self._apply([change])

    # --- the publisher's side (watcher.store.Outbox) ---------------------------------------

    def pending(self, limit: int = 1000, after: int = 0) -> list[OutboxEntry]:
        return self._sync(self._pending, limit, after)

    def pending_nowait(self, limit: int = 1000, after: int = 0) -> list[OutboxEntry] | None:
        return self._sync(self._pending, limit, after)

    def _pending(self, limit: int, after: int) -> list[OutboxEntry]:
        """What waits, in order, of this member's own entries and of the shards whose
        lease is certain right now (the fence, checked before each batch)."""
        certain: dict[str, bool] = {}
        out: list[OutboxEntry] = []
        for seq, (entry, event) in self._queue.items():
            if seq <= after:
                continue
            label = entry.label
            if label is not None:
                ok = certain.get(label)
                if ok is None:
                    ok = certain[label] = label in self._jobs and self._holds(label)
                if not ok:
                    continue
            out.append(OutboxEntry(seq, event.id, event.subject, event.payload))
            if len(out) >= limit:
                break
        return out

    def acknowledge(self, seqs: Sequence[int]) -> None:
        if seqs:
            self._async(self._acknowledge, list(seqs))

    def dead_letter(self, seq: int, reason: str) -> None:
        self._async(self._dead_letter, seq, reason)

    async def _dead_letter(self, seq: int, why: str) -> None:
        item = self._queue.get(seq)
        if item is None:
            return
        entry, event = item
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        value = records.dead_value(event, why, at, entry.label)
        try:
            with anyio.fail_after(self._timeout):
                await self._need().kv.put(records.dead_key(event.id), value)
        except Exception as exc:
            raise StateWriteError(f"cannot set an event aside: {reason(exc)}") from None
        self._dead += 1
        await self._acknowledge([seq])

    def outbox_depth(self) -> int:
        return len(self._queue) + len(self._unsaved)

    def dead_letter_count(self) -> int:
        return self._dead

    def close(self) -> None:
        """Nothing to close: the connection is the replica's."""
