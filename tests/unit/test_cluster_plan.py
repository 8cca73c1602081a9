"""Who should hold which shard (`watcher.cluster.plan`), and shard and member names as
key-value keys (`watcher.cluster.keys`): pure, no NATS, no clock."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.cluster.keys import decode, encode, lease_key, member_key, parse_key, shard_name
from watcher.cluster.plan import (
    Situation,
    assign,
    plan,
    preferred,
    ranking,
    track_free,
    weight,
)

SHARDS = frozenset(f"account-{a}/region-{r}" for a in range(10) for r in range(10))
KEY_CHARS = set("-/_=.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


# --- names as keys --------------------------------------------------------------------


@given(st.text(min_size=1))
def test_any_name_encodes_to_one_valid_key_token_and_back(name: str) -> None:
    token = encode(name)
    assert set(token) <= KEY_CHARS and "." not in token and "/" not in token
    assert decode(token) == name
    assert parse_key(lease_key(name)) == ("lease", name)
    assert parse_key(member_key(name)) == ("member", name)


def test_usual_names_stay_readable() -> None:
    assert encode("default/cn-hangzhou") == "default=2Fcn-hangzhou"
    assert encode("pod_0-a") == "pod_0-a"
    assert encode("a.b") == "a=2Eb"
    assert encode("=") == "=3D"
    assert lease_key(shard_name("prod", "cn-shanghai")) == "lease.prod=2Fcn-shanghai"


@pytest.mark.parametrize("token", ["", "a b", "=4", "=zz", "=41", "a.b", "=FF"])
def test_what_encode_cannot_have_written_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="not an encoded name"):
        decode(token)


def test_keys_that_are_not_ours_are_ignored() -> None:
    assert parse_key("other.thing") is None
    assert parse_key("lease.=zz") is None
    with pytest.raises(ValueError, match="empty"):
        encode("")
    with pytest.raises(ValueError, match="pair"):
        shard_name("a", "cn/x")


# --- rendezvous -----------------------------------------------------------------------


def test_every_member_ranks_the_same_way_whatever_the_order_it_lists_them_in() -> None:
    members = ["a", "b", "c", "d"]
    for shard in SHARDS:
        assert ranking(shard, members) == ranking(shard, list(reversed(members)))
        assert preferred(shard, members) == ranking(shard, members)[0]
    assert weight("a", "s") == weight("a", "s") != weight("s", "a")
    assert preferred("s", []) is None


def test_rendezvous_alone_moves_only_what_a_joining_or_leaving_member_gains_or_loses() -> None:
    before = {s: preferred(s, ["a", "b", "c"]) for s in SHARDS}
    joined = {s: preferred(s, ["a", "b", "c", "d"]) for s in SHARDS}
    moved = {s for s in SHARDS if before[s] != joined[s]}
    assert moved and all(joined[s] == "d" for s in moved)
    left = {s: preferred(s, ["a", "c"]) for s in SHARDS}
    assert all(left[s] == before[s] for s in SHARDS if before[s] != "b")


@pytest.mark.parametrize("count", [12, 30, 100])
@pytest.mark.parametrize("members", [2, 3, 4, 5])
def test_the_assignment_is_even_and_moves_about_the_share_it_should(
    count: int, members: int
) -> None:
    shards = sorted(SHARDS)[:count]
    names = [f"pod-{i}" for i in range(members)]
    chosen = assign(shards, names)
    assert set(chosen) == set(shards)
    loads = Counter(chosen.values())
    assert set(loads) <= set(names)
    assert max(loads.values()) <= -(-count // members)  # nobody holds more than its share
    assert assign(shards, list(reversed(names))) == chosen  # the same on every member
    # A member joins: the newcomer's share moves, and not much more.
    joined = assign(shards, [*names, "pod-new"])
    moved = sum(chosen[s] != joined[s] for s in shards)
    assert moved <= 2 * count / (members + 1) + 2
    # A member leaves: its shards move, and not much more.
    left = assign(shards, names[1:])
    moved = sum(chosen[s] != left[s] for s in shards)
    assert moved <= 2 * loads[names[0]] + 2


def test_a_dozen_shards_spread_four_four_four_where_rendezvous_alone_would_not() -> None:
    shards = [f"account-{i // 4}/cn-region-{i % 4}" for i in range(12)]
    names = ["pod-0", "pod-1", "pod-2"]
    assert sorted(Counter(assign(shards, names).values()).values()) == [4, 4, 4]
    assert assign(shards, []) == {}


# --- decisions ------------------------------------------------------------------------


def situation(**given: object) -> Situation:
    values: dict[str, object] = {
        "me": "a",
        "now": 100.0,
        "shards": SHARDS,
        "members": {"a": "ia", "b": "ib"},
        "holders": {},
        "mine": frozenset(),
        "grace": 15.0,
    }
    values.update(given)
    return Situation(**values)  # type: ignore[arg-type]


def mine(member: str, members: list[str]) -> set[str]:
    return {s for s, owner in assign(SHARDS, members).items() if owner == member}


def test_a_member_takes_the_free_shards_it_is_preferred_for_and_waits_for_the_rest() -> None:
    decided = plan(situation())
    assert set(decided.acquire) == mine("a", ["a", "b"])
    assert decided.release == () and decided.passed_over == {}


def test_a_free_shard_is_taken_by_another_once_the_grace_has_passed() -> None:
    bs = mine("b", ["a", "b"])
    early = {s: 100.0 - 14.9 for s in bs}
    assert set(plan(situation(free_since=early)).acquire) == mine("a", ["a", "b"])
    late = {s: 100.0 - 15.0 for s in bs}
    decided = plan(situation(free_since=late))
    assert set(decided.acquire) == set(SHARDS)
    assert decided.passed_over == dict.fromkeys(bs, ("b", "ib"))


def test_held_shards_are_left_alone() -> None:
    held_by_b = {s: "b" for s in mine("a", ["a", "b"])}
    assert plan(situation(holders=held_by_b)).acquire == ()


def test_a_member_hands_over_what_a_newcomer_is_preferred_for() -> None:
    members = {"a": "ia", "b": "ib", "c": "ic"}
    held = frozenset(mine("a", ["a", "b"]))
    decided = plan(situation(members=members, mine=held))
    assert set(decided.release) == held - mine("a", ["a", "b", "c"])
    assert all(assign(SHARDS, members)[s] != "a" for s in decided.release)
    # ...once: what is already being handed over is not released again.
    again = plan(situation(members=members, mine=held, leaving=frozenset(decided.release)))
    assert again.release == ()


def test_no_ping_pong_with_a_member_that_let_a_shard_stay_free() -> None:
    shard = next(iter(mine("b", ["a", "b"])))
    held = frozenset({shard})
    passed = {shard: ("b", "ib")}
    assert plan(situation(mine=held, passed_over=passed, shards=held)).release == ()
    # b restarted (a new incarnation, perhaps configured for it now): it gets it back.
    restarted = {"a": "ia", "b": "ib-2"}
    decided = plan(situation(mine=held, passed_over=passed, shards=held, members=restarted))
    assert decided.release == (shard,)


def test_a_leaving_member_wants_nothing_and_releases_everything() -> None:
    held = frozenset(mine("a", ["a", "b"]))
    decided = plan(situation(mine=held, shards=frozenset()))
    assert set(decided.release) == held and decided.acquire == ()


def test_me_counts_as_alive_even_before_my_heartbeat_is_seen() -> None:
    decided = plan(situation(members={}))
    assert set(decided.acquire) == set(SHARDS)


def test_equal_situations_give_equal_plans() -> None:
    assert plan(situation()) == plan(situation())


def test_free_since_is_kept_while_free_and_forgotten_once_taken() -> None:
    seen = track_free({}, ["x", "y"], 10.0)
    assert seen == {"x": 10.0, "y": 10.0}
    seen = track_free(seen, ["x", "z"], 20.0)
    assert seen == {"x": 10.0, "z": 20.0}
