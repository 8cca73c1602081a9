"""Helpers for the tests of more than one replica: retry a NATS operation while a
cluster fails over, and wait for the cluster's state without sleeping blindly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def eventually(operation: Callable[[], Awaitable[T]], deadline: float = 30.0) -> T:
    """Run `operation` until it succeeds (NATS refuses while a leader is elected)."""
    last: BaseException | None = None
    try:
        with anyio.fail_after(deadline):
            while True:
                try:
                    return await operation()
                except Exception as exc:  # any failure while the cluster recovers: retry
                    last = exc
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not done within {deadline:g} s; last: {last!r}") from last


async def wait_for(condition: Callable[[], T | None], deadline: float = 30.0) -> T:
    """Poll `condition` (run in a thread: it may call monitoring endpoints) until it
    returns something other than None or False."""
    with anyio.fail_after(deadline):
        while True:
            found = await anyio.to_thread.run_sync(condition)
            if found is not None and found is not False:
                return found
            await anyio.sleep(0.05)


class Ticks:
    """A monotonic clock the test moves by hand (for fences and grace periods); with
    `step`, every reading also moves it on (time passes while a request is in flight)."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A ShardHandler that writes down what it is told, in order, and on
    `shard_releasing` checks the lease is still this member's (told before deletion)."""

    def __init__(self, name: str, leases: object = None) -> None:
        self.name = name
        self.leases = leases
        self.told: list[tuple[str, str]] = []
        self.held_while_releasing: list[bool] = []

    async def shard_acquired(self, shard: str) -> None:
        self.told.append(("acquired", shard))

    async def shard_releasing(self, shard: str) -> None:
        holds = getattr(self.leases, "holds", None)
        self.held_while_releasing.append(bool(holds and holds(shard)))
        self.told.append(("releasing", shard))

    async def shard_lost(self, shard: str) -> None:
        self.told.append(("lost", shard))


# --- several watcher replicas as processes (tests/e2e/test_cluster.py) -------------------


async def holders(servers: list[str], bucket: str = "dts_watcher_leases") -> dict[str, str]:
    """Shard (`account/region`) -> the member holding its lease, as the bucket says now
    (empty while the bucket cannot be read)."""
    import nats

    from watcher.cluster import Claim
    from watcher.cluster.bucket import Bucket
    from watcher.cluster.keys import LEASE, parse_key

    nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=2)
    try:
        js = nc.jetstream(timeout=2)
        try:
            kv = await js.key_value(bucket)
            entries = await Bucket(js, kv, bucket, 0.0).read_all(2.0)
        except Exception:  # not made yet, or a leader being elected: nothing known
            return {}
        found: dict[str, str] = {}
        for entry in entries:
            parsed = parse_key(entry.key)
            claim = None if entry.tombstone else Claim.decode(entry.value)
            if parsed is not None and parsed[0] == LEASE and claim is not None:
                found[parsed[1]] = claim.member
        return found
    finally:
        await nc.close()


async def stream_events(servers: list[str], stream: str = "DTS_EVENTS") -> list[dict[str, Any]]:
    """Every event the stream stored, in order (empty while it cannot be read)."""
    import json

    import nats

    nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=2)
    try:
        js = nc.jetstream(timeout=2)
        out: list[dict[str, Any]] = []
        try:
            info = await js.stream_info(stream)
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                if not info.state.messages:
                    break
                try:
                    msg = await js.get_msg(stream, seq)
                except nats.js.errors.NotFoundError:
                    continue
                out.append(json.loads(msg.data))
        except Exception:  # not made yet, or a leader being elected: nothing known
            return []
        return out
    finally:
        await nc.close()


async def saved_events(servers: list[str], bucket: str = "dts_watcher_state") -> dict[str, int]:
    """Job id -> how many events wait in its entry of the state bucket (saved by the
    shard's holder, not yet published and cleared)."""
    import nats

    from watcher.cluster import records
    from watcher.cluster.bucket import Bucket

    nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=2)
    try:
        js = nc.jetstream(timeout=2)
        kv = await js.key_value(bucket)
        entries = await Bucket(js, kv, bucket, 0.0).read_all(5.0, keys="job.>")
        found: dict[str, int] = {}
        for entry in entries:
            if not entry.tombstone:
                key = records.job_key_of(entry.key)
                found[key.job_id] = len(records.decode_job(entry.value).pending)
        return found
    finally:
        await nc.close()
