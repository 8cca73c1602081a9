"""The rounds of a member: heartbeat, renew, look, decide, act; and a clean leave.

Every `Leases.renew_interval` (a third of the TTL) a member

1. renews its heartbeat (a second process under its name stops it: ClusterError),
   marked `leaving` once it is stopping, so the others count it out at once;
2. renews each lease it holds, all at once; a lease found lost is reported
   (`shard_lost`) and dropped: the caller stops that shard's work at once;
3. reads the whole bucket (which members are alive, who holds what);
4. decides with `plan` (pure: `watcher.cluster.plan`) what to acquire and release;
5. acquires (reporting `shard_acquired`), and starts handing over what it releases: the
   caller is told (`shard_releasing`) and finishes the shard's cycle and flushes while
   the lease is still renewed (for at most `handover_timeout`); then the lease is
   deleted and the shard is free at once.

`stop()` makes the member leave: it wants no shard any more, so the next round hands
every shard over the same way; then its heartbeat is deleted and `run` returns. A
network failure in a round is logged and the round goes on with what it can: leases
keep their fences and run out if NATS stays away.

Rounds also start early when another member says something changed: given a core NATS
connection (`nc`), a member publishes a small "nudge" on `_DTS_WATCHER.cluster.<bucket>.
changed` when it joins, releases a lease, or leaves, and runs a round when it hears one.
A graceful handover then takes a fraction of a second instead of up to a round; a lost
nudge only means waiting for the round.

The caller (`watcher.replica`, in the service) implements `ShardHandler`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import anyio
import nats.errors

from watcher.cluster.keys import LEASE, MEMBER, parse_key
from watcher.cluster.leases import Claim, Leases
from watcher.cluster.plan import Plan, Situation, plan, track_free
from watcher.errors import ClusterError, why
from watcher.logs import get_logger

__all__ = ["Coordinator", "ShardHandler", "View", "read_view"]

log = get_logger("watcher.cluster")

# What a round survives: NATS unreachable, slow, or refusing for a while.
TRANSIENT = (nats.errors.Error, TimeoutError, OSError)


class ShardHandler(Protocol):
    async def shard_acquired(self, shard: str) -> None:
        """The lease is ours: start watching the shard (check `Leases.holds` before
        committing or publishing its events)."""

    async def shard_releasing(self, shard: str) -> None:
        """The shard goes to another member: finish its cycle and flush, then return.
        The lease is renewed meanwhile; it is deleted when this returns."""

    async def shard_lost(self, shard: str) -> None:
        """The lease is gone (someone else wrote it, or it expired): stop at once;
        `holds` is already False."""


class _Quiet:
    async def shard_acquired(self, shard: str) -> None:
        return None

    async def shard_releasing(self, shard: str) -> None:
        return None

    async def shard_lost(self, shard: str) -> None:
        return None


class View:
    """The bucket as one read saw it: live members, who holds which shard, and when the
    first entry another member stopped renewing should end."""

    def __init__(
        self,
        members: dict[str, Claim],
        leases: dict[str, Claim],
        soonest_end: float | None = None,
        overdue: frozenset[str] = frozenset(),
    ) -> None:
        self.members = members
        self.leases = leases
        # Members whose heartbeat has outlived the TTL: dead, the server has just not
        # removed the entry yet (it removes expired entries in batches).
        self.overdue = overdue
        # Seconds from the read until the first entry of another member ends if it is
        # not renewed (by the server's clock, against the newest entry of the read).
        self.soonest_end = soonest_end


async def read_view(leases: Leases) -> View:
    members: dict[str, Claim] = {}
    held: dict[str, Claim] = {}
    entries = await leases.bucket.read_all(leases.timeout)
    stamps = [e.written for e in entries if e.written is not None]
    newest = max(stamps) if stamps else None
    soonest: float | None = None
    overdue: set[str] = set()
    for entry in entries:
        parsed = parse_key(entry.key)
        claim = None if entry.tombstone else Claim.decode(entry.value)
        if parsed is None or claim is None:
            continue
        kind, name = parsed
        if kind == MEMBER and claim.member == name:
            members[name] = claim
        elif kind == LEASE:
            held[name] = claim
        else:
            continue
        if claim.incarnation != leases.incarnation and newest and entry.written:
            ends = leases.ttl - (newest - entry.written).total_seconds()
            soonest = ends if soonest is None else min(soonest, ends)
            if kind == MEMBER and ends <= 0:
                overdue.add(name)
    return View(members, held, soonest, frozenset(overdue))


class Coordinator:
    def __init__(
        self,
        leases: Leases,
        shards: Iterable[str],
        handler: ShardHandler | None = None,
        *,
        grace: float | None = None,
        handover_timeout: float | None = None,
        nc: Any = None,
    ) -> None:
        self.leases = leases
        self._nc = nc  # a core NATS connection for wake-ups (optional)
        self.wake_subject = f"_DTS_WATCHER.cluster.{leases.bucket.name}.changed"
        self.shards = frozenset(shards)
        self.handler: ShardHandler = handler or _Quiet()
        self.grace = leases.ttl if grace is None else grace
        self.rounds = 0
        self.last_view: View | None = None
        self._free_since: dict[str, float] = {}
        self._passed_over: dict[str, tuple[str, str]] = {}
        self._leaving: set[str] = set()
        self.handover_timeout = 4 * leases.ttl if handover_timeout is None else handover_timeout
        self._troubled = False
        self._contended = False
        self._stopping = anyio.Event()
        self._wake = anyio.Event()
        self._tg: Any = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Leave: hand every shard over, delete the heartbeat, and let `run` return."""
        self._stopping.set()
        self._wake.set()

    async def _register(self) -> None:
        """Join, retrying while NATS cannot answer (a bucket just made, a leader being
        elected); a second process under this member's name is an error at once."""
        pause = 0.1
        while True:
            try:
                await self.leases.register()
                return
            except TRANSIENT as exc:
                log.warning("cluster.join_failed", error=why(exc), retry_in=pause)
            await anyio.sleep(pause)
            pause = min(pause * 2, self.leases.renew_interval)

    async def _nudge(self) -> None:
        """Tell the other members something changed (a join, a release), so they look
        now rather than at their next round. Best effort: the rounds do not need it."""
        if self._nc is None:
            return
        try:
            await self._nc.publish(self.wake_subject, self.leases.member.encode())
        except Exception as exc:
            log.debug("cluster.nudge_failed", error=why(exc))

    async def _woken(self, msg: Any) -> None:
        if msg.data != self.leases.member.encode():
            self._wake.set()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await self._register()
        log.info("cluster.joined", member=self.leases.member, shards=len(self.shards))
        sub = None
        if self._nc is not None:
            sub = await self._nc.subscribe(self.wake_subject, cb=self._woken)
        try:
            await self._loop(task_status)
        finally:
            if sub is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await sub.unsubscribe()
        await self._nudge()  # gone: the others rebalance now
        log.info("cluster.left", member=self.leases.member)

    async def _loop(self, task_status: Any) -> None:
        task_status.started()
        await self._nudge()  # a newcomer: the others hand its share over now
        refused: ClusterError | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            while True:
                try:
                    await self.round()
                except ClusterError as exc:  # raised below, outside the task group
                    refused = exc
                    tg.cancel_scope.cancel()
                    break
                if self._stopping.is_set() and not self.leases.held():
                    break
                # After a failed renewal, try again soon: a NATS leader election takes
                # seconds, and the fence keeps running meanwhile.
                with anyio.move_on_after(self._pause()) as scope:
                    await self._wake.wait()  # stop(), a handover done, another's nudge
                if not scope.cancelled_caught:
                    await anyio.sleep(0.05)  # let a burst of nudges make one round
                self._wake = anyio.Event()
        self._tg = None
        if refused is not None:
            raise refused
        await self.leases.leave()

    def _pause(self) -> float:
        """Until the next round: the renewal interval; a sixth of it after a failed
        renewal; a tenth after an acquire the view promised and the bucket refused; or
        just past the moment an entry of a member that stopped renewing
        should end (its shards are then taken at once, not up to a round later)."""
        pause = self.leases.renew_interval / (6 if self._troubled else 1)
        if self._contended:
            pause = min(pause, max(0.25, self.leases.renew_interval / 10))
        soonest = self.last_view.soonest_end if self.last_view is not None else None
        if soonest is not None and soonest + 0.25 < pause:
            pause = max(0.25, soonest + 0.25)
        return pause

    async def round(self) -> Plan:
        """One round (see the module's docstring); returns what it decided."""
        self.rounds += 1
        self._troubled = self._contended = False
        await self._renew_all()
        try:
            view = await read_view(self.leases)
        except TRANSIENT as exc:
            log.warning("cluster.view_failed", error=why(exc))
            return Plan()
        self.last_view = view
        decided = plan(self._situation(view))
        for shard in decided.acquire:
            await self._acquire(shard, decided.passed_over.get(shard))
        for shard in decided.release:
            self._leaving.add(shard)
            if self._tg is None:
                await self._hand_over(shard)
            else:
                self._tg.start_soon(self._hand_over, shard)
        return decided

    def _situation(self, view: View) -> Situation:
        me, held = self.leases.member, self.leases.held()
        now = self.leases.clock()
        # A member that is leaving takes nothing, nor one whose heartbeat has outlived
        # the TTL: count them out at once.
        members = {
            name: claim.incarnation
            for name, claim in view.members.items()
            if not claim.leaving and name not in view.overdue
        }
        members[me] = self.leases.incarnation
        # A lease of this process it does not know of (an acquire whose answer was
        # lost) counts as free: acquiring it adopts it.
        holders = {
            shard: claim.member
            for shard, claim in view.leases.items()
            if shard not in held and claim.incarnation != self.leases.incarnation
        }
        wanted = frozenset() if self._stopping.is_set() else self.shards
        self._free_since = track_free(self._free_since, wanted - held - set(holders), now)
        self._passed_over = {s: p for s, p in self._passed_over.items() if s in held}
        return Situation(
            me=me,
            now=now,
            shards=wanted,
            members=members,
            holders=holders,
            mine=held,
            grace=self.grace,
            leaving=frozenset(self._leaving),
            free_since=self._free_since,
            passed_over=self._passed_over,
        )

    async def _heartbeat(self, refused: list[ClusterError]) -> None:
        try:
            await self.leases.heartbeat(leaving=self._stopping.is_set())
        except TRANSIENT as exc:
            self._troubled = True
            log.warning("cluster.heartbeat_failed", error=why(exc))
        except ClusterError as exc:  # raised after the task group, not inside a group
            refused.append(exc)

    async def _renew_all(self) -> None:
        """The heartbeat and every lease, renewed at once (one slow answer delays none
        of the others)."""
        lost: list[str] = []
        refused: list[ClusterError] = []

        async def renew(shard: str) -> None:
            try:
                if await self.leases.renew(shard) is False:  # None: released meanwhile
                    lost.append(shard)
            except TRANSIENT as exc:
                self._troubled = True
                log.warning("cluster.renew_failed", shard=shard, error=why(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat, refused)
            for shard in sorted(self.leases.held()):
                tg.start_soon(renew, shard)
        if refused:
            raise refused[0]
        for shard in lost:
            log.warning("cluster.shard_lost", shard=shard, member=self.leases.member)
            await self.handler.shard_lost(shard)

    async def _acquire(self, shard: str, passed_over: tuple[str, str] | None) -> None:
        try:
            taken = await self.leases.acquire(shard)
        except TRANSIENT as exc:
            log.warning("cluster.acquire_failed", shard=shard, error=why(exc))
            return
        if not taken:
            # The view said free, the bucket's leader disagrees: the read came from a
            # server that removed an expired entry before the leader did. Look again
            # soon rather than a round later.
            self._contended = True
            return
        if passed_over is not None:
            self._passed_over[shard] = passed_over
        self._free_since.pop(shard, None)
        log.info("cluster.shard_acquired", shard=shard, member=self.leases.member)
        await self.handler.shard_acquired(shard)

    async def _hand_over(self, shard: str) -> None:
        """Tell the caller, let it finish while the lease is renewed, then delete it."""
        try:
            with anyio.move_on_after(self.handover_timeout) as scope:
                await self.handler.shard_releasing(shard)
            if scope.cancelled_caught:
                log.warning("cluster.handover_slow", shard=shard, seconds=self.handover_timeout)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.leases.release(shard)
                except TRANSIENT as exc:
                    log.warning("cluster.release_failed", shard=shard, error=why(exc))
                self._leaving.discard(shard)
                if self._stopping.is_set():
                    self._wake.set()
                await self._nudge()  # free now: its next holder need not wait a round
        log.info("cluster.shard_released", shard=shard, member=self.leases.member)
