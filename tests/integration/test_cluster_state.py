"""The shards' state in JetStream (`watcher.cluster.state.ClusterState`), on the real
nats-server: what one member saves, the next one continues from; nothing is written or
published without a certain lease; a stale holder cannot overwrite what the next one
saved (the revision fences each entry); a job gone from DTS leaves the bucket once its
`removed` is out; a dead member's own events are published by the next to start.

Each member here is a ClusterState driven by hand (no leases bucket): `holds` is what a
test says the lease is. Commits go through a worker thread, as the cycle makes them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from watcher.cluster.bucket import Bucket, open_state_bucket
from watcher.cluster.checks import raise_errors
from watcher.cluster.state import ClusterState
from watcher.detect import Detection, PageByPage, detect
from watcher.errors import StateWriteError
from watcher.events import watcher_event
from watcher.rules import Rules
from watcher.snapshot import JobState, RegionOutcome, Snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HZ = "cn-hangzhou"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RULES = Rules()


def job(job_id: str, status: str = "Synchronizing") -> JobState:
    return JobState(region=HZ, job_id=job_id, direction="Forward", job_name=job_id, status=status)


def listing(*jobs: JobState) -> Snapshot:
    return Snapshot.of(jobs, [RegionOutcome(HZ)])


class Member:
    """A member with a lease the test holds in its hand."""

    def __init__(self, name: str, bucket: Bucket) -> None:
        self.lease = True
        self.state = ClusterState(name, holds=lambda label: self.lease)
        self.state.attach(bucket)

    async def take(self) -> None:
        await self.state.start(live=set())
        await self.state.adopt(HZ)

    async def judge(self, snapshot: Snapshot, at: int = 1) -> Detection:
        baseline, memory = await anyio.to_thread.run_sync(self.state.load)
        moment = T0 + timedelta(seconds=at)
        return detect(baseline, snapshot, memory, RULES, moment)

    async def commit(self, detection: Detection) -> None:
        def run() -> None:
            for _ in self.state.commit_steps(detection, "dts", 1000):
                pass

        await anyio.to_thread.run_sync(run)

    async def cycle(self, snapshot: Snapshot, at: int = 1) -> Detection:
        detection = await self.judge(snapshot, at)
        await self.commit(detection)
        return detection

    def waiting(self) -> list[tuple[str, str]]:
        return [(e.id, e.subject.rsplit(".", 1)[-1]) for e in self.state.pending_nowait() or []]

    async def publish(self) -> None:
        """What the publisher does once JetStream acknowledged everything waiting."""
        seqs = [e.seq for e in self.state.pending_nowait() or []]
        await anyio.to_thread.run_sync(self.state.acknowledge, seqs)


@pytest.fixture
async def bucket(nats_client: Any) -> Bucket:
    found, findings = await open_state_bucket(nats_client.jetstream(timeout=2), "state", 1)
    raise_errors(findings)
    return found


async def test_the_next_holder_continues_from_the_saved_state_and_publishes_what_waits(
    bucket: Bucket,
) -> None:
    a = Member("a", bucket)
    await a.take()
    first = await a.cycle(listing(job("j1"), job("j2")))
    said = [(e.id, e.kind) for e in first.events]
    assert [kind for _, kind in said] == ["discovered", "discovered"]
    assert a.waiting() == said  # saved, not yet published

    a.lease = False  # a dies before publishing; b takes the shard over
    b = Member("b", bucket)
    await b.take()
    assert b.waiting() == said  # the same events, the same ids
    assert a.waiting() == []  # and nothing of a shard not certainly held goes out
    again = await b.cycle(listing(job("j1"), job("j2")), at=2)
    assert again.events == []  # no re-discovery
    failed = await b.cycle(listing(job("j1", "Failed"), job("j2")), at=3)
    assert [e.kind for e in failed.events] == ["status_changed"]
    await b.publish()
    assert b.waiting() == []

    c = Member("c", bucket)  # the next holder: nothing left to say, memory kept
    await c.take()
    assert c.waiting() == []
    baseline, memory = await anyio.to_thread.run_sync(c.state.load)
    assert baseline.jobs[job("j1").key].status == "Failed"
    assert memory.shard_cycles == {HZ: 3}  # the shard's own count of cycles, shared


async def test_a_stale_holder_cannot_overwrite_what_the_next_one_saved(bucket: Bucket) -> None:
    a = Member("a", bucket)
    await a.take()
    await a.cycle(listing(job("j1")))
    await a.publish()
    stale = await a.judge(listing(job("j1", "Failed")), at=2)  # a judges, then pauses...

    b = Member("b", bucket)  # ...its lease runs out, b takes over and saves first
    await b.take()
    await b.cycle(listing(job("j1", "Stopped")), at=3)

    with pytest.raises(StateWriteError, match="written meanwhile by another member"):
        await a.commit(stale)  # a still believes in its lease: the revision refuses it
    assert [kind for _, kind in a.waiting()] == []  # nothing of its judgement goes out
    baseline, _ = await anyio.to_thread.run_sync(a.state.load)  # read again from NATS
    assert baseline.jobs[job("j1").key].status == "Stopped"
    c = Member("c", bucket)
    await c.take()
    assert [kind for _, kind in c.waiting()] == ["status_changed"]  # b's, once


async def test_nothing_is_saved_or_published_without_a_certain_lease(bucket: Bucket) -> None:
    a = Member("a", bucket)
    await a.take()
    await a.cycle(listing(job("j1")))
    a.lease = False
    assert a.waiting() == []
    with pytest.raises(StateWriteError, match="no longer certain"):
        await a.cycle(listing(job("j1", "Failed")), at=2)
    a.lease = True  # renewed in time: what was saved goes out; the failure is seen again
    assert [kind for _, kind in a.waiting()] == ["discovered"]
    detection = await a.cycle(listing(job("j1", "Failed")), at=3)
    assert [e.kind for e in detection.events] == ["status_changed"]


async def test_a_removed_job_leaves_the_bucket_once_its_event_is_out(bucket: Bucket) -> None:
    a = Member("a", bucket)
    await a.take()
    await a.cycle(listing(job("j1"), job("j2")))
    await a.publish()
    await a.cycle(listing(job("j1")), at=2)  # absent once: not yet removed
    gone = await a.cycle(listing(job("j1")), at=3)
    assert [e.kind for e in gone.events] == ["removed"]
    keys = {e.key for e in await bucket.read_all(keys="job.>") if not e.tombstone}
    assert len(keys) == 2  # j2's entry holds its `removed` until it is published
    await a.publish()
    keys = {e.key for e in await bucket.read_all(keys="job.>") if not e.tombstone}
    assert len(keys) == 1
    back = await a.cycle(listing(job("j1"), job("j2")), at=4)  # over its tombstone
    assert [e.kind for e in back.events] == ["discovered"]


async def test_a_dead_members_own_events_are_published_by_the_next_to_start(
    bucket: Bucket,
) -> None:
    a = Member("a", bucket)
    await a.take()
    started = watcher_event("started", "info", T0, {"version": "x"})
    await anyio.to_thread.run_sync(a.state.add_events, [started], "dts")
    assert a.waiting() == [(started.id, "started")]
    b = Member("b", bucket)  # a died; b starts and does not see it alive
    await b.take()
    assert (started.id, "started") in b.waiting()
    await b.publish()
    mine = {e.key for e in await bucket.read_all(keys="own.>") if not e.tombstone}
    assert "own.a" not in mine  # emptied, and gone


async def test_pages_are_saved_as_they_are_judged(bucket: Bucket) -> None:
    """`poll.emit = "page"`: each page's jobs and events are one write each, before the
    listing ends; the next holder finds them."""
    a = Member("a", bucket)
    await a.take()
    baseline, memory = await anyio.to_thread.run_sync(a.state.load)
    pages = PageByPage(baseline, memory, RULES)
    found = pages.judge([job("j1"), job("j2")], T0)
    saved = await anyio.to_thread.run_sync(a.state.save_page, found.jobs, found.events, "dts")
    assert saved and [kind for _, kind in a.waiting()] == ["discovered", "discovered"]
    rest = pages.finish(listing(job("j1"), job("j2")), T0)
    assert rest.events == []
    await a.commit(rest)
    a.lease = False
    b = Member("b", bucket)
    await b.take()
    assert [kind for _, kind in b.waiting()] == ["discovered", "discovered"]
    baseline, memory = await anyio.to_thread.run_sync(b.state.load)
    assert set(baseline.jobs) == {job("j1").key, job("j2").key}
    assert memory.shard_cycles == {HZ: 1}
