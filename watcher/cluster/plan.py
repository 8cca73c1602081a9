"""Who should hold which shard: pure decisions, no I/O, no clock reads.

Every member ranks the live members for a shard by rendezvous (highest-random-weight)
hashing: the weight of (member, shard) is a hash of both, and the shard's preferred
member is the one with the highest weight. Every member computes the same ranking from
the same list, with no coordination; when a member joins or leaves, only the shards it
gains or loses move.

Rendezvous alone spreads a dozen shards unevenly (7, 3 and 2 over three members is
common), so `assign` bounds the load: taking the shards in a fixed order, each goes to
the first member of its ranking that holds fewer than ceil(shards / members). Every
member computes the same assignment from the same shards and members; a join or a leave
still moves about the share it should (tests/unit/test_cluster_plan.py measures it).

Each round a member, given what it sees in the bucket (`Situation`), decides (`plan`):

- **acquire** a free shard assigned to it; or a free shard assigned to someone else
  once it has stayed free for the grace period (that member is not taking it: not
  configured for it, or failing);
- **release** a shard it holds that is assigned to another live member (a member
  joined, or came back): the caller is told first and finishes the shard's cycle;
- but never hand a shard back to a member that already let it go free without taking
  it (`passed_over`), until that member restarts (a new incarnation): no ping-pong.

The lease itself (compare-and-set in JetStream) decides who actually holds a shard; a
plan is only what this member will try.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Plan", "Situation", "assign", "plan", "preferred", "ranking", "track_free", "weight"]


def weight(member: str, shard: str) -> int:
    """The rendezvous weight of `member` for `shard` (the same on every machine)."""
    blob = f"{len(member)}:{member}|{shard}".encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def ranking(shard: str, members: Iterable[str]) -> list[str]:
    """The members in the order they are preferred for `shard`, best first."""
    return sorted(members, key=lambda member: (weight(member, shard), member), reverse=True)


def preferred(shard: str, members: Iterable[str]) -> str | None:
    ranked = ranking(shard, members)
    return ranked[0] if ranked else None


def _order(shard: str) -> tuple[int, str]:
    return int.from_bytes(hashlib.blake2b(shard.encode(), digest_size=8).digest(), "big"), shard


def assign(shards: Iterable[str], members: Iterable[str]) -> dict[str, str]:
    """Each shard's member: its rendezvous ranking, with no member given more than
    ceil(shards / members). The same inputs give the same answer on every member."""
    names = sorted(set(members))
    chosen: dict[str, str] = {}
    if not names:
        return chosen
    todo = sorted(set(shards), key=_order)
    capacity = -(-len(todo) // len(names))
    load = dict.fromkeys(names, 0)
    for shard in todo:
        for member in ranking(shard, names):
            if load[member] < capacity:
                chosen[shard] = member
                load[member] += 1
                break
    return chosen


@dataclass(frozen=True)
class Situation:
    """What a member knows at the start of a round."""

    me: str
    now: float  # the member's monotonic clock
    shards: frozenset[str]  # the shards this member is configured to watch
    members: Mapping[str, str]  # live member -> its incarnation (not leaving ones)
    holders: Mapping[str, str]  # shard -> the member holding it (mine excluded)
    mine: frozenset[str]  # shards this member holds
    grace: float  # seconds a free shard waits for its preferred member
    leaving: frozenset[str] = frozenset()  # mine, being handed over already
    free_since: Mapping[str, float] = field(default_factory=dict)  # see track_free
    # shard -> (member, incarnation) that was preferred but let it stay free
    passed_over: Mapping[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    acquire: tuple[str, ...] = ()
    release: tuple[str, ...] = ()
    # shards in `acquire` taken from a preferred member that did not take them
    passed_over: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def plan(s: Situation) -> Plan:
    """What this member should try this round (sorted, so equal situations give equal
    plans)."""
    chosen = assign(s.shards, set(s.members) | {s.me})
    acquire: list[str] = []
    passed: dict[str, tuple[str, str]] = {}
    for shard in sorted(s.shards - s.mine - set(s.holders)):
        owner = chosen[shard]
        if owner == s.me:
            acquire.append(shard)
        elif s.now - s.free_since.get(shard, s.now) >= s.grace:
            acquire.append(shard)
            passed[shard] = (owner, s.members.get(owner, ""))
    release: list[str] = []
    for shard in sorted(s.mine - s.leaving):
        best = chosen.get(shard)
        if best is None:
            release.append(shard)  # not configured here (or leaving): someone else's
        elif best != s.me and s.passed_over.get(shard) != (best, s.members.get(best, "")):
            release.append(shard)
    return Plan(tuple(acquire), tuple(release), passed)


def track_free(
    free_since: Mapping[str, float], free_now: Iterable[str], now: float
) -> dict[str, float]:
    """Since when each shard free now has been seen free (a shard taken in between
    starts over)."""
    return {shard: free_since.get(shard, now) for shard in free_now}
