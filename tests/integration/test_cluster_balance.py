"""Members sharing shards through the leases bucket, on the real nats-server: rounds
driven by hand (deterministic), then the loop itself (`Coordinator.run`, `stop`).

Who should hold what is decided by rendezvous hashing (tests/unit/test_cluster_plan.py
tests the decisions alone); here the decisions meet the bucket: every shard ends up
held by exactly one member, its preferred live one; a member that joins gets its share
from the others (each told before its lease is deleted); a member that leaves hands its
shards over; one that dies loses them to the others when its leases expire.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import anyio
import pytest

from tests.support.cluster import Recorder, Ticks, eventually
from watcher.cluster import Claim, Coordinator, Leases, open_bucket
from watcher.cluster.bucket import Bucket
from watcher.cluster.checks import raise_errors
from watcher.cluster.keys import lease_key
from watcher.cluster.plan import assign
from watcher.errors import ClusterError

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SHARDS = [f"account-{a}/cn-region-{r}" for a in range(3) for r in range(4)]


async def make_bucket(nats_client: Any, ttl: float) -> Bucket:
    bucket, findings = await open_bucket(
        nats_client.jetstream(timeout=2), "leases", ttl, replicas=1
    )
    raise_errors(findings)
    return bucket


async def member(
    bucket: Bucket, name: str, shards: Iterable[str] = SHARDS, **options: Any
) -> tuple[Coordinator, Recorder]:
    leases = Leases(bucket, name, clock=options.pop("clock", time.monotonic))
    recorder = Recorder(name, leases)
    coordinator = Coordinator(leases, shards, recorder, **options)
    await leases.register()
    return coordinator, recorder


def holdings(*coordinators: Coordinator) -> dict[str, set[str]]:
    return {c.leases.member: set(c.leases.held()) for c in coordinators}


def assert_balanced(*coordinators: Coordinator) -> None:
    chosen = assign(SHARDS, [c.leases.member for c in coordinators])
    held = holdings(*coordinators)
    for shard in SHARDS:
        holders = [name for name, shards in held.items() if shard in shards]
        assert holders == [chosen[shard]], shard


async def test_shards_spread_over_members_and_move_when_one_joins_or_leaves(
    nats_client: Any,
) -> None:
    bucket = await make_bucket(nats_client, ttl=30.0)
    a, told_a = await member(bucket, "a")
    await a.round()
    assert holdings(a) == {"a": set(SHARDS)}  # alone, it watches everything

    b, told_b = await member(bucket, "b")
    c, told_c = await member(bucket, "c")
    await b.round()  # sees a holding everything: nothing free
    assert holdings(b) == {"b": set()}
    await a.round()  # sees b and c: hands their shares over (told first)
    released = [shard for kind, shard in told_a.told if kind == "releasing"]
    assert released and all(told_a.held_while_releasing)
    for m in (b, c):
        await m.round()
    assert_balanced(a, b, c)
    assert all(holdings(a, b, c).values())  # nobody idles: 12 shards, 3 members

    # c leaves cleanly: told first about each of its shards, then they are free and go
    # to the preferred of a and b at once.
    c.stop()
    theirs = set(c.leases.held())
    await c.round()
    assert c.leases.held() == frozenset()
    assert {s for kind, s in told_c.told if kind == "releasing"} == theirs
    assert all(told_c.held_while_releasing)
    await c.leases.leave()
    for m in (a, b):
        await m.round()
    assert_balanced(a, b)
    assert {s for kind, s in told_b.told if kind == "acquired"} >= theirs & {
        s for s, owner in assign(SHARDS, ["a", "b"]).items() if owner == "b"
    }


async def test_a_leaving_members_shards_are_taken_as_soon_as_it_lets_each_go(
    nats_client: Any,
) -> None:
    """A member stopping says so in its heartbeat: the others count it out at once and
    take each shard the moment it is released, while it still finishes the others."""
    bucket = await make_bucket(nats_client, ttl=30.0)
    a, _ = await member(bucket, "a")
    b, _ = await member(bucket, "b")
    c, _ = await member(bucket, "c")
    for m in (a, b, c, a, b, c):
        await m.round()
    assert_balanced(a, b, c)
    c.stop()
    await c.leases.heartbeat(leaving=True)  # what its next round does first
    after = assign(SHARDS, ["a", "b"])
    shard = next(s for s in sorted(c.leases.held()) if after[s] == "a")
    await c.leases.release(shard)  # one handed over; the others still being finished
    await a.round()
    assert shard in a.leases.held()


async def test_a_shard_its_preferred_member_does_not_take_is_taken_after_the_grace(
    nats_client: Any,
) -> None:
    bucket = await make_bucket(nats_client, ttl=30.0)
    clock = Ticks()
    a, _ = await member(bucket, "a", clock=clock, grace=10.0)
    # b is alive (its heartbeat is renewed) but watches no shard: it never takes one.
    idle = Leases(bucket, "b")
    await idle.register()
    theirs = {s for s, owner in assign(SHARDS, ["a", "b"]).items() if owner == "b"}
    assert theirs
    await a.round()
    assert a.leases.held() == frozenset(SHARDS) - theirs
    clock.advance(9.9)
    await a.round()
    assert a.leases.held() == frozenset(SHARDS) - theirs  # still waiting for b
    clock.advance(0.2)
    await a.round()
    assert a.leases.held() == frozenset(SHARDS)  # b did not take them: a does
    await idle.heartbeat()
    clock.advance(5)
    await a.round()
    assert a.leases.held() == frozenset(SHARDS)  # and does not hand them back to b


async def test_the_loop_balances_and_a_leaving_member_hands_over(nats_client: Any) -> None:
    bucket = await make_bucket(nats_client, ttl=3.0)
    members = [
        Coordinator(Leases(bucket, name), SHARDS, Recorder(name)) for name in ("a", "b", "c")
    ]

    def balanced() -> bool:
        try:
            assert_balanced(*members)
        except AssertionError:
            return False
        return True

    async with anyio.create_task_group() as tg:
        for m in members:
            await tg.start(m.run)

        async def settled() -> None:
            assert balanced()

        await eventually(settled, deadline=30)
        members[2].stop()  # SIGTERM: c hands over and leaves; run() returns

        async def moved() -> None:
            assert members[2].leases.held() == frozenset()
            assert_balanced(*members[:2])

        await eventually(moved, deadline=30)
        for m in members[:2]:
            m.stop()
    view_after = [m.leases.held() for m in members]
    assert view_after == [frozenset()] * 3


async def test_a_dead_members_shards_are_taken_when_its_leases_expire(nats_client: Any) -> None:
    bucket = await make_bucket(nats_client, ttl=1.5)
    a, _ = await member(bucket, "a")
    dead, _ = await member(bucket, "dead")
    await a.round()
    await dead.round()
    await a.round()
    await dead.round()
    assert_balanced(a, dead)
    lost = set(dead.leases.held())
    assert lost
    # "dead" stops renewing (SIGKILL). Its heartbeat and leases end a TTL later; a's
    # rounds then see it gone and take its shards.

    async def taken_over() -> None:
        await a.leases.heartbeat()
        await a.round()
        assert a.leases.held() == frozenset(SHARDS)

    await eventually(taken_over, deadline=15)


async def test_a_member_whose_name_another_process_takes_stops_with_a_clear_error(
    nats_client: Any,
) -> None:
    """Two replicas under one name that the start-up check could not tell apart (the
    first was cut off from NATS for longer than a TTL): the first one's next heartbeat
    finds the other's, and `run` ends with the error naming the setting."""
    bucket = await make_bucket(nats_client, ttl=3.0)
    first = Coordinator(Leases(bucket, "pod-0"), SHARDS)
    caught: list[ClusterError] = []

    async def running(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await first.run(task_status=task_status)
        except ClusterError as exc:
            caught.append(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(running)
            # The other process writes its heartbeat over the first one's (again if the
            # first renewed it between the read and the write).
            second = Leases(bucket, "pod-0")

            async def overwrite() -> None:
                entry = await bucket.kv.get("member.pod-0")
                await bucket.kv.update(
                    "member.pod-0",
                    Claim("pod-0", second.incarnation, "2020-01-01T00:00:00Z").encode(),
                    last=entry.revision,
                )

            await eventually(overwrite)
            # first's next round (a second later) finds it and ends run().
    assert len(caught) == 1 and "DTS_WATCHER_CLUSTER__MEMBER" in str(caught[0])


async def test_nudges_make_a_join_and_a_clean_leave_take_effect_before_the_next_round(
    nats_client: Any,
) -> None:
    """Rounds every 20 s here (TTL 60 s); a member that joins or leaves nudges the
    others over core NATS, so they rebalance at once instead of at their next round."""
    bucket = await make_bucket(nats_client, ttl=60.0)
    names = ("a", "b", "c")
    members = [Coordinator(Leases(bucket, n), SHARDS, Recorder(n), nc=nats_client) for n in names]

    async def balanced(*which: Coordinator) -> None:
        assert_balanced(*which)

    with anyio.fail_after(15):  # well inside one 20 s round
        async with anyio.create_task_group() as tg:
            await tg.start(members[0].run)
            await eventually(lambda: balanced(members[0]), deadline=15)
            for m in members[1:]:
                await tg.start(m.run)
            await eventually(lambda: balanced(*members), deadline=15)
            members[2].stop()
            await eventually(lambda: balanced(*members[:2]), deadline=15)
            for m in members[:2]:
                m.stop()


async def test_a_member_sees_when_a_silent_members_entries_will_end(nats_client: Any) -> None:
    """The view says how soon the first entry of a member that stopped renewing ends
    (by the server's timestamps), so the next round comes just after it rather than up
    to a round later; a member that renews never looks like that."""
    bucket = await make_bucket(nats_client, ttl=3.0)
    a, _ = await member(bucket, "a")
    silent, _ = await member(bucket, "silent")
    for m in (a, silent, a, silent):
        await m.round()
    view = a.last_view
    assert view is not None and view.soonest_end is not None
    assert view.soonest_end > a.leases.ttl - a.leases.renew_interval - 0.5  # all fresh

    async def ending() -> None:
        await a.round()
        assert a.last_view is not None and a.last_view.soonest_end is not None
        assert a.last_view.soonest_end < a.leases.renew_interval

    await eventually(ending, deadline=10)  # silent stopped renewing: its entries age


async def test_a_member_whose_heartbeat_outlived_the_ttl_counts_as_gone(
    nats_client: Any,
) -> None:
    """NATS removes expired entries in batches, a little after their time: a heartbeat
    older than the TTL is a dead member's, not a live one's. (Here the bucket keeps
    entries 60 s while the members count on 1 s, so the stale entry stays.)"""
    stored = await make_bucket(nats_client, ttl=60.0)
    bucket = replace(stored, ttl=1.0)
    silent = Leases(bucket, "silent")
    await silent.register()  # and never again
    a, _ = await member(bucket, "a", grace=600.0)
    theirs = {s for s, owner in assign(SHARDS, ["a", "silent"]).items() if owner == "silent"}
    await a.round()
    assert a.leases.held() == frozenset(SHARDS) - theirs  # silent is alive: its share waits

    async def gone() -> None:
        await a.round()
        assert a.last_view is not None and "silent" in a.last_view.overdue
        assert a.leases.held() == frozenset(SHARDS)  # not waiting for the grace period

    await eventually(gone, deadline=10)


async def test_an_acquire_the_view_promised_and_the_bucket_refused_is_retried_soon(
    nats_client: Any,
) -> None:
    """A read from a server that removed an expired lease before the bucket's leader
    did says "free" when it is not yet: the next round comes soon, not a round later.
    (Here another member takes the shard between the read and the acquire.)"""
    stored = await make_bucket(nats_client, ttl=60.0)  # rounds every 20 s
    intruder = Claim("other", "other-process", "2020-01-01T00:00:00Z")
    first_read = True

    class Racing:
        def __getattr__(self, name: str) -> Any:
            return getattr(stored, name)

        async def read_all(self, within: float = 5.0) -> Any:
            nonlocal first_read
            entries = await stored.read_all(within)
            if first_read:  # between this read and the acquires, "other" takes one
                first_read = False
                await stored.kv.create(lease_key(SHARDS[0]), intruder.encode())
            return entries

    a = Coordinator(Leases(Racing(), "a"), SHARDS)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(a.run)

        async def looked_again() -> None:
            assert a.rounds >= 2

        await eventually(looked_again, deadline=5)
        assert SHARDS[0] not in a.leases.held()
        a.stop()
