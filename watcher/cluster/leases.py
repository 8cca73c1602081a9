"""Leases on shards and this member's heartbeat, in the leases bucket, with a fence.

A lease is the key `lease.<shard>` holding a `Claim` (member, incarnation, since when).
It is taken by compare-and-set: `create` (the key holds nothing), or an update with the
expected revision of the tombstone or expired marker it replaces. The holder renews it
(an update with the revision it last wrote) every third of the TTL; an update that finds
another revision means someone else wrote the key: the lease is dropped at once. A
lease not renewed disappears from the bucket one TTL after its last write, and then
anyone may take it. Release is a delete with the expected revision.

**The fence.** The holder counts on a lease only until `valid_until`: the time, by its
own monotonic clock, when it *sent* the last write NATS acknowledged, plus the TTL,
minus a safety margin. NATS stamps that write at or after it was sent and keeps it a TTL
(by the NATS servers' clocks, so the margin also covers their skew), so nobody else can
hold the shard before `valid_until`. Code checks `holds(shard)` (or `valid_until`) before
committing or publishing a shard's work; a renewal that fails for a network reason keeps
the lease but not the time: the fence runs out unless a later renewal succeeds.

**The incarnation** is a random token of this process. It tells this process's writes
from those of another process under the same member name: a renewal whose
acknowledgement was lost is recognized as ours and adopted; a live heartbeat under our
name from another incarnation is a second replica with our name, and is refused.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import anyio
import nats.js.errors
import orjson

from watcher.cluster.bucket import Bucket, Entry
from watcher.cluster.keys import lease_key, member_key
from watcher.errors import ClusterError

__all__ = ["Claim", "Leases", "WrongRevision", "wrong_last_sequence"]

MEMBER_SETTING = "cluster.member (DTS_WATCHER_CLUSTER__MEMBER)"
_WRONG_LAST_SEQUENCE = (10071, 10164)


@dataclass(frozen=True)
class Claim:
    """What a lease or heartbeat entry says: who, which process, since when."""

    member: str
    incarnation: str
    since: str  # RFC 3339, when the lease was taken (or the member started)
    leaving: bool = False  # a heartbeat's: handing its shards over, take none

    def encode(self) -> bytes:
        data: dict[str, object] = {
            "member": self.member,
            "incarnation": self.incarnation,
            "since": self.since,
        }
        if self.leaving:
            data["leaving"] = True
        return orjson.dumps(data)

    @classmethod
    def decode(cls, data: bytes) -> Claim | None:
        try:
            raw = orjson.loads(data)
            return cls(
                str(raw["member"]),
                str(raw["incarnation"]),
                str(raw.get("since", "")),
                raw.get("leaving") is True,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return None


class WrongRevision(Exception):
    """The key's revision is not the one expected: someone else wrote it."""


@dataclass
class _Held:
    revision: int
    valid_until: float
    claim: Claim


def wrong_last_sequence(exc: nats.js.errors.APIError) -> bool:
    """The server refused a write because the key's revision was not the one expected
    (nats-py raises KeyWrongLastSequenceError for updates, a plain BadRequestError with
    the error code for deletes)."""
    if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
        return True
    return getattr(exc, "err_code", None) in _WRONG_LAST_SEQUENCE


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Leases:
    """This member's leases and heartbeat in one bucket. Calls on one shard take turns
    (a release waits for a renewal in flight, and deletes the revision it wrote)."""

    def __init__(
        self,
        bucket: Bucket,
        member: str,
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = _now_text,
        incarnation: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.bucket = bucket
        self.member = member
        self.ttl = bucket.ttl
        self.margin = bucket.ttl / 5 if margin is None else margin
        self.clock = clock
        self.incarnation = incarnation or secrets.token_hex(8)
        self.timeout = timeout if timeout is not None else min(5.0, self.ttl / 5)
        self._wall = wall
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._heartbeat: _Held | None = None

    @property
    def renew_interval(self) -> float:
        return self.ttl / 3

    def _claim(self) -> Claim:
        return Claim(self.member, self.incarnation, self._wall())

    def _ours(self, entry: Entry | None) -> bool:
        if entry is None or entry.tombstone:
            return False
        claim = Claim.decode(entry.value)
        return claim is not None and (claim.member, claim.incarnation) == (
            self.member,
            self.incarnation,
        )

    # --- the fence --------------------------------------------------------------------

    def holds(self, shard: str) -> bool:
        """True while the lease on `shard` is certainly this member's."""
        held = self._held.get(shard)
        return held is not None and self.clock() < held.valid_until

    def valid_until(self, shard: str) -> float | None:
        """Until when (this member's monotonic clock) the lease is certainly its own;
        None when it holds no lease on `shard`."""
        held = self._held.get(shard)
        return held.valid_until if held is not None else None

    def held(self) -> frozenset[str]:
        """The shards this member has a lease on (some may be past their fence: see
        `holds`)."""
        return frozenset(self._held)

    def revision(self, shard: str) -> int | None:
        held = self._held.get(shard)
        return held.revision if held is not None else None

    def since(self, shard: str) -> str | None:
        held = self._held.get(shard)
        return held.claim.since if held is not None else None

    # --- key-value writes, compare-and-set --------------------------------------------

    async def _write(self, key: str, claim: Claim, last: int) -> tuple[int, float]:
        """Write `claim` if the key's revision is `last` (0: the key holds nothing);
        (the new revision, the fence it earns). WrongRevision otherwise."""
        sent = self.clock()
        try:
            with anyio.fail_after(self.timeout):
                if last == 0:
                    revision = await self.bucket.kv.create(key, claim.encode())
                else:
                    revision = await self.bucket.kv.update(key, claim.encode(), last=last)
        except nats.js.errors.APIError as exc:
            if wrong_last_sequence(exc):
                raise WrongRevision(key) from None
            raise
        return int(revision), sent + self.ttl - self.margin

    async def _take(self, key: str, claim: Claim) -> tuple[int, float] | None:
        """Take `key` for `claim` if it holds nothing (or our own claim); None if it is
        someone else's."""
        try:
            return await self._write(key, claim, 0)
        except WrongRevision:
            pass
        entry = await self.bucket.last(key)
        if entry is None:  # it expired between the two requests
            last = 0
        elif entry.tombstone or self._ours(entry):
            last = entry.revision
        else:
            return None
        try:
            return await self._write(key, claim, last)
        except WrongRevision:
            return None

    # --- leases -----------------------------------------------------------------------

    def _turn(self, shard: str) -> anyio.Lock:
        return self._locks.setdefault(shard, anyio.Lock())

    async def acquire(self, shard: str) -> bool:
        """Take the lease on `shard`; False if someone else holds it. Network errors
        are raised (the lease may or may not have been taken: the next round tells)."""
        async with self._turn(shard):
            return await self._acquire(shard)

    async def _acquire(self, shard: str) -> bool:
        if self.holds(shard):
            return True
        held = self._held.get(shard)  # past its fence: renewed over, "since" kept
        claim = held.claim if held is not None else self._claim()
        taken = await self._take(lease_key(shard), claim)
        if taken is None:
            self._held.pop(shard, None)
            return False
        self._held[shard] = _Held(taken[0], taken[1], claim)
        return True

    async def renew(self, shard: str) -> bool | None:
        """Renew the lease on `shard`: True if renewed; False if it was lost (someone
        else wrote it, or it expired), and then it is dropped; None if this member holds
        no lease on it (released meanwhile). Network errors are raised and the lease
        kept (its fence unchanged)."""
        async with self._turn(shard):
            held = self._held.get(shard)
            if held is None:
                return None
            return await self._renew(shard, held)

    async def _renew(self, shard: str, held: _Held) -> bool:
        key = lease_key(shard)
        try:
            revision, fence = await self._write(key, held.claim, held.revision)
        except WrongRevision:
            entry = await self.bucket.last(key)
            if entry is None or not self._ours(entry):
                self._held.pop(shard, None)
                return False
            held.revision = entry.revision  # a renewal of ours whose answer was lost
            try:
                revision, fence = await self._write(key, held.claim, held.revision)
            except WrongRevision:
                self._held.pop(shard, None)
                return False
        held.revision = revision
        held.valid_until = max(held.valid_until, fence)
        return True

    async def release(self, shard: str) -> None:
        """Give the lease up: stop counting on it, then delete it (expecting our
        revision: a lease someone else holds now is left alone). If NATS cannot be
        reached, the lease ends by itself within the TTL."""
        held = self._held.pop(shard, None)
        if held is None:
            return
        async with self._turn(shard):  # a renewal in flight updates `held.revision`
            with anyio.fail_after(self.timeout):
                await self._delete(lease_key(shard), held.revision)

    def drop(self, shard: str) -> None:
        """Forget a lease without a word to NATS (it ends by itself within the TTL)."""
        self._held.pop(shard, None)

    async def _delete(self, key: str, revision: int) -> None:
        try:
            await self.bucket.kv.delete(key, last=revision)
        except nats.js.errors.APIError as exc:
            if not wrong_last_sequence(exc):
                raise

    # --- this member's heartbeat --------------------------------------------------------

    def _duplicate(self) -> ClusterError:
        return ClusterError(
            f"another replica is running as member {self.member!r} ({MEMBER_SETTING}): "
            "give every replica a name of its own (e.g. its pod name)"
        )

    async def register(self, *, poll: float | None = None) -> None:
        """Write this member's heartbeat. If the name's heartbeat is another process's,
        wait to see whether it is renewed (a second replica under this name: ClusterError)
        or ends (a previous process under this name that died: take its place)."""
        key = member_key(self.member)
        claim = self._claim()
        step = poll if poll is not None else max(0.05, self.ttl / 30)
        deadline = self.clock() + self.ttl + self.renew_interval
        seen: Entry | None = None
        while True:
            taken = await self._take(key, claim)
            if taken is not None:
                self._heartbeat = _Held(taken[0], taken[1], claim)
                return
            entry = await self.bucket.last(key)
            if entry is None or entry.tombstone:
                continue  # it ended just now: take it
            if seen is None:
                seen = entry
            elif entry.revision != seen.revision:
                raise self._duplicate()  # renewed meanwhile: that process is alive
            elif self.clock() > deadline:
                # Not renewed for longer than a TTL: its process is gone, NATS has not
                # removed the entry yet. Take its place over its revision.
                try:
                    revision, fence = await self._write(key, claim, entry.revision)
                except WrongRevision:
                    continue
                self._heartbeat = _Held(revision, fence, claim)
                return
            await anyio.sleep(step)

    async def heartbeat(self, *, leaving: bool = False) -> None:
        """Renew this member's heartbeat (`leaving`: say it is handing its shards over,
        so the others count it out at once); ClusterError if another process now writes
        under this member's name. A heartbeat that expired meanwhile is written anew."""
        if self._heartbeat is None:
            await self.register()
            return
        key = member_key(self.member)
        held = self._heartbeat
        if held.claim.leaving != leaving:
            held.claim = replace(held.claim, leaving=leaving)
        try:
            revision, fence = await self._write(key, held.claim, held.revision)
        except WrongRevision:
            entry = await self.bucket.last(key)
            if entry is not None and not entry.tombstone and not self._ours(entry):
                raise self._duplicate() from None
            taken = await self._take(key, held.claim)
            if taken is None:
                raise self._duplicate() from None
            revision, fence = taken
        held.revision, held.valid_until = revision, fence

    async def leave(self) -> None:
        """Release every lease, then delete the heartbeat: the others rebalance at once."""
        for shard in sorted(self._held):
            await self.release(shard)
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            with anyio.fail_after(self.timeout):
                await self._delete(member_key(self.member), heartbeat.revision)
