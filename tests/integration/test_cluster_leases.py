"""Leases on shards in a JetStream key-value bucket, on the real nats-server.

Compare-and-set decides who holds a shard; the holder's fence (its own clock) ends
before NATS lets anyone else take it; a renewal that finds another writer drops the
lease at once; two processes under one member name are refused. Tests that need time
to pass in NATS use a bucket TTL of about a second; the holder's clock is injected
where only the fence is at stake.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio
import anyio.lowlevel
import nats
import nats.js.errors
import pytest

from dts_sim.natsserver import NatsServer
from tests.support.cluster import Ticks, eventually
from watcher.cluster import Claim, Leases, open_bucket
from watcher.cluster.bucket import Bucket
from watcher.cluster.checks import raise_errors, survey
from watcher.cluster.keys import lease_key, member_key
from watcher.errors import ClusterError

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Open = Callable[..., Awaitable[Bucket]]


@pytest.fixture
async def js(nats_client: Any) -> Any:
    return nats_client.jetstream(timeout=2)


@pytest.fixture
async def bucket(js: Any) -> AsyncIterator[Open]:
    async def make(name: str = "leases", ttl: float = 30.0) -> Bucket:
        opened, findings = await open_bucket(js, name, ttl, replicas=1)
        raise_errors(findings)
        return opened

    yield make


async def test_a_shard_is_held_by_one_member_at_a_time(bucket: Open) -> None:
    b = await bucket()
    a, other = Leases(b, "a"), Leases(b, "b")
    assert await a.acquire("default/cn-hangzhou")
    assert not await other.acquire("default/cn-hangzhou")
    assert a.holds("default/cn-hangzhou") and not other.holds("default/cn-hangzhou")
    assert await other.acquire("default/cn-shanghai")  # another shard is free
    entry = await b.kv.get(lease_key("default/cn-hangzhou"))
    claim = Claim.decode(entry.value)
    assert claim is not None and (claim.member, claim.incarnation) == ("a", a.incarnation)


async def test_the_fence_is_the_last_acknowledged_send_plus_ttl_minus_the_margin(
    bucket: Open,
) -> None:
    b = await bucket(ttl=30.0)
    clock = Ticks()
    a = Leases(b, "a", clock=clock)
    assert a.margin == 6.0 and a.renew_interval == 10.0
    assert await a.acquire("s")
    assert a.valid_until("s") == 1000.0 + 30.0 - 6.0
    first = a.revision("s")
    clock.advance(10)
    assert await a.renew("s")
    assert a.valid_until("s") == 1010.0 + 24.0
    assert a.revision("s") > first  # type: ignore[operator]
    # Past the fence the holder stops counting on the lease, while NATS still has it...
    clock.advance(24)
    assert not a.holds("s")
    assert not await Leases(b, "b").acquire("s")
    # ...and a renewal that finds its own revision still there restores it.
    assert await a.renew("s")
    assert a.holds("s")


async def test_the_fence_counts_from_before_the_request_not_from_its_answer(
    bucket: Open,
) -> None:
    b = await bucket(ttl=30.0)
    clock = Ticks(step=1.0)  # a second passes at every reading of the clock
    a = Leases(b, "a", clock=clock)
    assert await a.acquire("s")
    # The clock was read once, before the write was sent (1000); counting from any
    # later reading would let the fence outlive the lease in NATS.
    assert a.valid_until("s") == 1000.0 + 30.0 - 6.0


async def test_an_expired_lease_is_taken_by_another_after_the_holders_fence(
    bucket: Open,
) -> None:
    b = await bucket(ttl=1.0)
    a, other = Leases(b, "a"), Leases(b, "b")
    assert await a.acquire("s")
    fence = a.valid_until("s")
    assert fence is not None

    async def take() -> None:
        assert await other.acquire("s")

    await eventually(take, deadline=10)  # NATS removes the entry a TTL after its write
    taken_at = time.monotonic()
    assert fence <= taken_at  # the old holder had stopped counting on it before
    assert not a.holds("s")
    assert await a.renew("s") is False  # its renewal finds another writer: dropped at once
    assert a.held() == frozenset() and a.valid_until("s") is None


async def test_a_renewal_that_finds_another_writer_drops_the_lease(bucket: Open) -> None:
    b = await bucket()
    a = Leases(b, "a")
    assert await a.acquire("s")
    intruder = Claim("b", "other-process", "2020-01-01T00:00:00Z")
    await b.kv.put(lease_key("s"), intruder.encode())
    assert await a.renew("s") is False
    assert not a.holds("s") and "s" not in a.held()
    # Its release does not delete what someone else wrote.
    await a.release("s")
    entry = await b.kv.get(lease_key("s"))
    assert Claim.decode(entry.value) == intruder


async def test_a_renewal_whose_answer_was_lost_is_recognised_as_ours(bucket: Open) -> None:
    b = await bucket()
    a = Leases(b, "a")
    assert await a.acquire("s")
    # The write of a renewal arrived, its acknowledgement did not: the revision moved
    # under a's own claim.
    entry = await b.kv.get(lease_key("s"))
    moved = await b.kv.update(lease_key("s"), entry.value, last=entry.revision)
    assert await a.renew("s")
    assert a.revision("s") > moved  # type: ignore[operator]


async def test_release_frees_the_shard_at_once(bucket: Open) -> None:
    b = await bucket()
    a, other = Leases(b, "a"), Leases(b, "b")
    assert await a.acquire("s")
    await a.release("s")
    assert not a.holds("s")
    assert await other.acquire("s")  # over the delete marker, without waiting


class SlowAnswers:
    """The bucket's real key-value handle, except that an update, once NATS has stored
    it, answers only when the test lets it (a renewal whose answer is on its way)."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv
        self.stored = anyio.Event()
        self.answer = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)

    async def update(self, *args: Any, **kwargs: Any) -> int:
        revision: int = await self.kv.update(*args, **kwargs)
        self.stored.set()
        await self.answer.wait()
        return revision


async def test_a_release_during_a_renewal_frees_the_shard_and_loses_nothing(
    bucket: Open,
) -> None:
    """The handover's release and the round's renewal of the same lease at once: the
    release waits for the renewal and deletes the revision it wrote (deleting the one
    before would fail, and the renewed lease would block the shard for a TTL)."""
    b = await bucket()
    slow = SlowAnswers(b.kv)
    a, other = Leases(replace(b, kv=slow), "a"), Leases(b, "b")
    assert await a.acquire("s")
    answers: list[bool | None] = []

    async def renew() -> None:
        answers.append(await a.renew("s"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(renew)
        await slow.stored.wait()  # the renewal is in NATS, its answer not back yet
        tg.start_soon(a.release, "s")
        while "s" in a.held():
            await anyio.lowlevel.checkpoint()
        slow.answer.set()
    assert answers == [True]  # renewed: not "lost"
    assert not a.holds("s")
    assert await other.acquire("s")  # free at once
    assert await a.renew("s") is None  # nothing held: nothing to renew, nothing lost


async def test_a_lease_is_taken_over_a_server_expiry_marker(js: Any) -> None:
    """A bucket with subject delete markers (nats-server 2.11+, `limit_marker_ttl`): the
    marker left when the TTL removes a lease counts as free. nats-py's own `create`
    waits for the marker's own expiry (a second TTL)."""
    await js.create_key_value(bucket="marked", history=1, ttl=1.0, limit_marker_ttl=30.0)
    b, findings = await open_bucket(js, "marked", 1.0, replicas=1)
    assert findings == []
    a, other = Leases(b, "a"), Leases(b, "b")
    assert await a.acquire("s")

    async def marker() -> None:
        entry = await b.last(lease_key("s"))
        assert entry is not None and entry.tombstone

    await eventually(marker, deadline=10)
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await b.kv.create(lease_key("s"), b"{}")
    assert await other.acquire("s")


async def test_two_processes_under_one_member_name_are_refused(bucket: Open) -> None:
    b = await bucket(ttl=1.5)
    first, second = Leases(b, "pod-0"), Leases(b, "pod-0")
    await first.register()

    async def keep_alive() -> None:
        while True:
            await first.heartbeat()
            await anyio.sleep(first.renew_interval)

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_alive)
        with (
            pytest.raises(ClusterError, match="DTS_WATCHER_CLUSTER__MEMBER") as caught,
            anyio.fail_after(10),  # it answers within a renewal or two, not at a deadline
        ):
            await second.register()
        assert "'pod-0'" in str(caught.value)
        tg.cancel_scope.cancel()
    # The first one, renewing, is undisturbed.
    await first.heartbeat()


async def test_a_restart_under_the_same_name_takes_the_dead_ones_place(bucket: Open) -> None:
    b = await bucket(ttl=1.0)
    dead = Leases(b, "pod-0")
    await dead.register()  # and never renews again: SIGKILLed
    restarted = Leases(b, "pod-0")
    await restarted.register()
    entry = await b.kv.get(member_key("pod-0"))
    claim = Claim.decode(entry.value)
    assert claim is not None and claim.incarnation == restarted.incarnation
    # The dead process, had it been only paused, is refused on its next heartbeat.
    with pytest.raises(ClusterError, match="DTS_WATCHER_CLUSTER__MEMBER"):
        await dead.heartbeat()


async def test_a_bucket_with_another_ttl_is_an_error_naming_the_setting(bucket: Open) -> None:
    await bucket("leases", ttl=30.0)
    with pytest.raises(ClusterError, match="DTS_WATCHER_CLUSTER__LEASE_TTL") as caught:
        await bucket("leases", ttl=15.0)
    assert "30 s" in str(caught.value) and "15 s" in str(caught.value)


async def test_cluster_mode_without_jetstream_is_an_error_naming_the_setting(
    tmp_path: Any,
) -> None:
    with NatsServer(store_dir=tmp_path, jetstream=False) as server:
        nc = await nats.connect(server.url)
        try:
            findings = await survey(nc.jetstream(timeout=2), server.url)
        finally:
            await nc.close()
    assert [f.level for f in findings] == ["error"]
    assert "DTS_WATCHER_CLUSTER__ENABLED" in findings[0].message
    assert "JetStream is not enabled" in findings[0].message
    with pytest.raises(ClusterError):
        raise_errors(findings)


async def test_a_lone_server_with_jetstream_passes_the_survey_and_gets_an_r1_bucket(
    nats_server: NatsServer, nats_client: Any
) -> None:
    js = nats_client.jetstream()
    assert await survey(js, nats_server.url) == []
    # Three replicas asked for (the default), one server: R1, and a warning saying so.
    bucket, (finding,) = await open_bucket(js, "leases", 15.0, replicas=3)
    assert (await js.stream_info(bucket.stream)).config.num_replicas == 1
    assert finding.level == "warning" and "DTS_WATCHER_CLUSTER__REPLICAS" in finding.message
    # Not a cluster: one replica is all there can be, nothing to warn about.
    _, findings = await open_bucket(js, "leases", 15.0, replicas=3)
    assert findings == []
