"""The shortcuts taken for speed (see benchmarks/) give exactly what the long way gives.

- `JobCache`: a record that did not change reuses last cycle's JobState; whatever did
  change (a field, the key order, the page a job is on, whether it is there at all) is
  parsed again, and the result always equals a fresh parse.
- `fastjson.loads`: orjson where it decodes exactly as the json module, the json module elsewhere.
- `JobState.to_dict`, written out, equals the `dataclasses.asdict` form it replaced; its
  head and body halves (the store writes them apart) split it exactly; a changed record
  shares the body objects of its previous parse when they are equal, and only then.
- `WithJob`, the lazy data of discovered/removed events, reads as the dict it stands for.
- The store's outbox reads past a seq, sees only committed events without waiting for a
  commit under way, never waits for another reader on the event loop, and forgets
  acknowledged events by runs of seqs.
- The rate limiter times each start from when the previous one really started.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_client import FakeDts, error, job, make_client
from tests.unit.test_models import INSTANCES, JOB_STATES, SAMPLE
from watcher.cycle import log_events
from watcher.dts.models import parse_page
from watcher.dts.pacing import RateLimiter
from watcher.dts.record_cache import JobCache
from watcher.events import Event, WithJob, encode
from watcher.fastjson import loads
from watcher.logs import configure
from watcher.snapshot import BODY_FIELDS, JobState
from watcher.store import Store
from watcher.store.outbox import runs

REGION = "cn-hangzhou"


def record(job_id: str, **fields: Any) -> dict[str, Any]:
    """One realistic record: the reference sample's job under another id."""
    raw = copy.deepcopy(SAMPLE["SynchronizationInstances"][0])
    raw["SynchronizationJobId"] = job_id
    raw.update(fields)
    return raw


def page(*records: dict[str, Any]) -> dict[str, Any]:
    """A decoded page, as the client hands it over (fresh objects every time)."""
    body = {"TotalRecordCount": len(records), "SynchronizationInstances": list(records)}
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(body))
    return decoded


def listing(cache: JobCache, *pages: dict[str, Any]) -> list[JobState]:
    return [j for body in pages for j in parse_page(body, REGION, cache).jobs]


# --- JobCache -----------------------------------------------------------------------------


def test_an_unchanged_record_gives_back_the_very_same_job_state() -> None:
    first = JobCache()
    before = listing(first, page(record("a"), record("b")))
    second = JobCache(first.seen)
    after = listing(second, page(record("a"), record("b")))
    assert after == before
    assert all(x is y for x, y in zip(after, before, strict=True))


def test_a_changed_field_is_parsed_again() -> None:
    first = JobCache()
    (a, b) = listing(first, page(record("a"), record("b")))
    second = JobCache(first.seen)
    (a2, b2) = listing(second, page(record("a", Status="Failed"), record("b")))
    assert b2 is b
    assert a2 is not a
    assert a2.status == "Failed"
    assert a2 == parse_page(page(record("a", Status="Failed")), REGION).jobs[0]


def test_a_changed_record_shares_the_unchanged_body_of_its_previous_parse() -> None:
    first = JobCache()
    (a,) = listing(first, page(record("a")))
    (a2,) = listing(JobCache(first.seen), page(record("a", Status="Failed")))
    assert a2 == parse_page(page(record("a", Status="Failed")), REGION).jobs[0]
    assert a2.precheck is a.precheck and a2.objects is a.objects
    assert a2.same_body(a) and a2 != a


def test_a_changed_body_is_not_shared() -> None:
    first = JobCache()
    (a,) = listing(first, page(record("a")))
    changed = record("a")
    changed["PrecheckStatus"]["Detail"][3]["CheckStatus"] = "Failed"
    (a2,) = listing(JobCache(first.seen), page(changed))
    assert a2.precheck is not a.precheck and a2.precheck != a.precheck
    assert a2.objects is a.objects  # the part that did not change still is
    assert not a2.same_body(a)


def test_a_change_deep_inside_a_record_is_seen() -> None:
    first = JobCache()
    (a,) = listing(first, page(record("a")))
    changed = record("a")
    changed["PrecheckStatus"]["Detail"][3]["CheckStatus"] = "Failed"
    (a2,) = listing(JobCache(first.seen), page(changed))
    assert a2 is not a
    assert a2.precheck is not None and len(a2.precheck.failed_items) == 1


def test_a_job_that_moved_to_another_page_is_still_recognised() -> None:
    first = JobCache()
    a, b, c = listing(first, page(record("a"), record("b")), page(record("c")))
    second = JobCache(first.seen)
    moved = listing(second, page(record("c"), record("a")), page(record("b")))
    assert [j.job_id for j in moved] == ["c", "a", "b"]
    assert moved[0] is c and moved[1] is a and moved[2] is b


def test_a_job_that_disappeared_is_forgotten() -> None:
    first = JobCache()
    listing(first, page(record("a"), record("b")))
    second = JobCache(first.seen)
    listing(second, page(record("a")))
    assert {key[0] for key in second.seen} == {"a"}
    # Back later, it is parsed afresh (nothing stale is kept for it).
    third = JobCache(second.seen)
    (_, b) = listing(third, page(record("a"), record("b")))
    assert b == parse_page(page(record("b")), REGION).jobs[0]


def test_same_values_in_another_key_order_are_parsed_again() -> None:
    first = JobCache()
    (a,) = listing(first, page(record("a")))
    reordered = dict(reversed(list(record("a").items())))
    (a2,) = listing(JobCache(first.seen), page(reordered))
    assert a2 is not a  # the fingerprint is of the text, and the text differs
    assert a2 == a


def test_keys_in_another_letter_case_are_cached_too() -> None:
    lower = {k[:1].lower() + k[1:]: v for k, v in record("a").items()}
    first = JobCache()
    (a,) = listing(first, page(lower))
    assert a.job_id == "a"
    (a2,) = listing(JobCache(first.seen), page(lower))
    assert a2 is a


def test_records_without_an_id_are_skipped_and_never_cached() -> None:
    cache = JobCache()
    body = page(record("a"), {"Status": "Failed"}, "not a record")  # type: ignore[arg-type]
    parsed = parse_page(body, REGION, cache)
    assert [j.job_id for j in parsed.jobs] == ["a"]
    assert parsed.skipped == 2
    assert len(cache.seen) == 1


def test_a_record_orjson_cannot_serialize_is_simply_not_cached() -> None:
    cache = JobCache()
    raw = record("a", Delay=2**70)  # beyond 64 bits: only the json module has such ints
    (a,) = parse_page({"SynchronizationInstances": [raw]}, REGION, cache).jobs
    assert a.job_id == "a" and not cache.seen


@settings(max_examples=60, deadline=None)
@given(
    pages=st.lists(st.lists(INSTANCES, max_size=4), min_size=2, max_size=4),
    data=st.data(),
)
def test_property_a_cached_parse_equals_a_fresh_parse(pages: list[Any], data: Any) -> None:
    """Cycle after cycle, whatever changed, moved or vanished in between."""
    cache = JobCache()
    for records in pages:
        # Some records of the previous cycle come back unchanged, in another place.
        carried = [r for r in data.draw(st.permutations(pages[0]))][: data.draw(st.integers(0, 4))]
        body = {"SynchronizationInstances": [*records, *carried]}
        try:
            decoded = orjson.loads(orjson.dumps(body))
        except orjson.JSONEncodeError:
            continue  # not what orjson ever hands over (integers beyond 64 bits)
        fresh = parse_page(copy.deepcopy(decoded), REGION)
        cached = parse_page(decoded, REGION, cache)
        assert cached == fresh
        cache = JobCache(cache.seen)


@pytest.mark.anyio
async def test_the_client_reuses_jobs_only_after_a_complete_listing() -> None:
    fake = FakeDts({REGION: [job(f"j{i:02}") for i in range(40)]})
    async with make_client(fake, backoff_initial=0.01) as client:
        first = await client.fetch()
        second = await client.fetch()
        assert all(second.jobs[k] is first.jobs[k] for k in first.jobs)
        # One job changes; the next listing fails half-way through (a 403 on page 2).
        fake.jobs[REGION][5] = job("j05", Status="Failed")
        fake.script[len(fake.requests) + 2] = error(403, "Forbidden.RAM")
        failed = await client.fetch()
        assert not failed.complete
        third = await client.fetch()
    assert third.complete
    changed = next(k for k in third.jobs if k.job_id == "j05")
    assert third.jobs[changed].status == "Failed"
    assert all(third.jobs[k] is first.jobs[k] for k in first.jobs if k != changed)


# --- fastjson.loads -------------------------------------------------------------------------------

ODD_BODIES = [
    b'{"a": 1}',
    b'{"a": NaN, "b": Infinity}',  # the json module takes these, orjson does not
    b'{"id": 123456789012345678901234567890}',  # beyond 64 bits: orjson would give a float
    b'{"id": -9223372036854775809}',
    b'{"id": 18446744073709551615}',
    b'"\\ud800"',
    b'\xef\xbb\xbf{"bom": true}',
    '{"utf16": 1}'.encode("utf-16"),
    b'{"a": 1, "a": 2}',
    b"  [1.5e300, -0.0, 1e-400]  ",
]


@pytest.mark.parametrize("body", ODD_BODIES)
def test_loads_decodes_exactly_as_the_json_module(body: bytes) -> None:
    document, exact = loads(body)
    expected = json.loads(body)
    assert repr(document) == repr(expected)  # repr: NaN != NaN, and types must match too
    if exact:
        assert orjson.loads(body) == document


@pytest.mark.parametrize("body", [b"", b"{", b"[1,]", b'{"a":"\xff"}'])
def test_loads_refuses_what_the_json_module_refuses(body: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError)):
        loads(body)


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**80), max_value=2**80)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_property_loads_equals_jsonloads(value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False).encode()
    document, _ = loads(body)
    assert repr(document) == repr(json.loads(body))


# --- JobState.to_dict ----------------------------------------------------------------------


def _asdict_form(state: JobState) -> dict[str, Any]:
    """What to_dict returned before it was written out."""
    out = dataclasses.asdict(state)
    out["tags"] = {k: v for k, v in state.tags}
    for name in ("create_time", "job_create_time", "instance_create_time", "expire_time"):
        value = getattr(state, name)
        out[name] = value.isoformat().replace("+00:00", "Z") if value else None
    return out


@settings(max_examples=200, deadline=None)
@given(state=JOB_STATES)
def test_property_to_dict_is_the_asdict_form(state: JobState) -> None:
    ours, theirs = state.to_dict(), _asdict_form(state)
    assert ours == theirs
    # Same keys in the same order, all the way down: the same JSON text.
    assert json.dumps(ours) == json.dumps(theirs)


@settings(max_examples=200, deadline=None)
@given(state=JOB_STATES)
def test_property_head_and_body_split_the_dict_exactly(state: JobState) -> None:
    head, body = state.head_dict(), state.body_dict()
    assert tuple(body) == BODY_FIELDS
    assert not head.keys() & body.keys()
    assert {**head, **body} == state.to_dict()
    assert JobState.from_dict({**orjson.loads(orjson.dumps(head)), **body}) == state


@settings(max_examples=300, deadline=None)
@given(a=JOB_STATES, b=JOB_STATES, take=st.sets(st.sampled_from(BODY_FIELDS)))
def test_property_same_body_is_equal_body_fields(a: JobState, b: JobState, take: set[str]) -> None:
    # b with some of a's body fields: equal bodies come up, not only different ones.
    b = dataclasses.replace(b, **{name: getattr(a, name) for name in take})
    assert a.same_body(b) == (a.body_dict() == b.body_dict())
    shared = b.sharing_body(a)
    assert shared == b
    assert (shared.precheck is a.precheck) == (a.precheck == b.precheck)


def test_to_dict_covers_every_field() -> None:
    names = [f.name for f in dataclasses.fields(JobState)]
    state = JobState(region="r", job_id="j", direction="Forward", job_name="n", status="s")
    assert list(state.to_dict()) == names


# --- WithJob -------------------------------------------------------------------------------

STATE = parse_page(page(record("a")), REGION).jobs[0]


def test_with_job_reads_as_the_dict_it_stands_for() -> None:
    fields = {"job_id": "a", "job_name": "n", "region": REGION, "direction": "Forward"}
    data = WithJob(fields, STATE)
    expected = {**fields, "job": STATE.to_dict()}
    assert data == expected and expected == data
    assert dict(data) == expected
    assert list(data) == list(expected)
    assert len(data) == len(expected)
    assert "job" in data and "job_id" in data and "nope" not in data
    assert data.get("nope") is None and data["job"]["job_id"] == "a"
    assert repr(data) == repr(expected)
    event = Event("discovered", "info", datetime(2026, 1, 1, tzinfo=UTC), data, "id", REGION, "a")
    assert json.loads(encode(event)) == json.loads(event.to_json())
    assert json.loads(event.to_json())["data"] == json.loads(json.dumps(expected))


# --- the store's outbox -------------------------------------------------------------------


def _events(n: int) -> list[Event]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Event(
            "status_changed",
            "critical",
            at,
            {"job_id": f"j{i}", "n": 1.5e16},
            f"e{i}",
            REGION,
            f"j{i}",
        )
        for i in range(n)
    ]


def test_runs_of_seqs() -> None:
    assert runs([]) == []
    assert runs([4]) == [(4, 4)]
    assert runs([1, 2, 3, 7, 8, 10]) == [(1, 3), (7, 8), (10, 10)]


def test_payloads_are_the_to_json_document(tmp_path: Path) -> None:
    for event in _events(3):
        assert json.loads(encode(event)) == json.loads(event.to_json())


def test_outbox_reads_past_a_seq_and_forgets_exactly_what_was_acknowledged(store: Store) -> None:
    store.add_events(_events(10), "dts")
    first = store.pending(4)
    assert [e.id for e in first] == ["e0", "e1", "e2", "e3"]
    assert [e.id for e in store.pending(3, after=first[-1].seq)] == ["e4", "e5", "e6"]
    seqs = {e.id: e.seq for e in store.pending(100)}
    store.acknowledge([seqs["e1"], seqs["e2"], seqs["e5"], seqs["e9"], seqs["e2"]])
    assert [e.id for e in store.pending(100)] == ["e0", "e3", "e4", "e6", "e7", "e8"]
    assert json.loads(store.pending(1)[0].payload) == json.loads(_events(1)[0].to_json())


def test_outbox_reads_see_committed_events_without_waiting_for_a_commit(
    store: Store, tmp_path: Path
) -> None:
    store.add_events(_events(2), "dts")
    assert [e.id for e in store.pending_nowait(10) or []] == ["e0", "e1"]
    held, release = threading.Event(), threading.Event()

    def commit_in_progress() -> None:  # a storm's transaction, half written
        writer = sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO outbox(id, subject, payload) VALUES ('e2', 'dts.x', x'7b7d')")
        held.set()
        release.wait(5)
        writer.execute("COMMIT")
        writer.close()

    worker = threading.Thread(target=commit_in_progress)
    worker.start()
    held.wait(5)
    # Not blocked by the writer, and not shown what it has not committed.
    assert [e.id for e in store.pending_nowait(10) or []] == ["e0", "e1"]
    release.set()
    worker.join()
    assert [e.id for e in store.pending_nowait(10) or []] == ["e0", "e1", "e2"]


def test_pending_nowait_never_waits_for_another_reader(store: Store) -> None:
    store.add_events(_events(2), "dts")
    with store._read_lock:
        assert store.pending_nowait(10) is None
    assert len(store.pending_nowait(10) or []) == 2


# --- the rate limiter -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_late_start_pushes_the_next_one_back() -> None:
    """The loop was busy: a request due at t went out at t + 0.3. The next waits a full
    interval after that, rather than going out at once (two in 0.3 s at 4/s)."""
    now = [100.0]
    waits: list[float] = []

    async def late_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds + (0.3 if len(waits) == 1 else 0.0)  # the first wake-up is late

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=late_sleep)
    starts = []
    async with anyio.create_task_group() as tg:
        for _ in range(3):

            async def one() -> None:
                await limiter.acquire()
                starts.append(now[0])

            tg.start_soon(one)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.25 - 1e-9 for gap in gaps), gaps


@pytest.mark.anyio
async def test_the_next_turn_counts_from_when_a_request_was_sent_not_granted() -> None:
    """Granted at t, but on the wire only at t + 0.3 (the loop yielded on the way): the
    next request's turn is a full interval after that send, so two never leave closer
    than the interval; and the next turn does not wait for the answer."""
    now = [100.0]
    waits: list[float] = []
    steps: list[str] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    sends: list[float] = []

    async def one(n: int, late: float) -> None:
        async with limiter.slot() as sent:
            steps.append(f"granted {n}")
            now[0] += late  # the way from the grant to the socket
            sends.append(now[0])
            sent()
            sent()  # a second call changes nothing
            for _ in range(5):  # reading the answer: the others go on meanwhile
                await anyio.lowlevel.checkpoint()
            steps.append(f"answered {n}")

    async with anyio.create_task_group() as tg:
        for n, late in enumerate((0.3, 0.0, 0.0)):
            tg.start_soon(one, n, late)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert gaps == pytest.approx([0.25, 0.25]), gaps  # from each send: 100.3, 100.55, 100.8
    assert steps.index("granted 1") < steps.index("answered 0"), steps


@pytest.mark.anyio
async def test_a_request_that_fails_before_it_is_sent_gives_the_turn_on() -> None:
    limiter = RateLimiter(4.0, clock=lambda: 0.0, sleep=lambda seconds: anyio.lowlevel.checkpoint())
    with pytest.raises(RuntimeError):
        async with limiter.slot():
            raise RuntimeError("connection refused")
    with anyio.fail_after(1):
        async with limiter.slot() as sent:
            sent()


# --- the cycle's event log lines --------------------------------------------------------


class _Publisher:
    """Busy (publishing) until `idle` is set."""

    def __init__(self) -> None:
        self.idle = anyio.Event()

    async def wait_idle(self) -> None:
        await self.idle.wait()


def _log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if '"event"' in line]


@pytest.mark.anyio
async def test_event_lines_wait_for_the_publisher_then_all_come() -> None:
    stream = io.StringIO()
    configure("info", "json", stream=stream)
    publisher = _Publisher()
    events = _events(40)

    async def publish_for_a_while() -> None:
        await anyio.sleep(0.05)
        publisher.idle.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish_for_a_while)
        await log_events(events, publisher.wait_idle)
        assert publisher.idle.is_set()  # the lines past the first slice waited for it
    lines = _log_lines(stream)
    assert [line["event_id"] for line in lines] == [e.id for e in events]


@pytest.mark.anyio
async def test_event_lines_do_not_wait_for_a_stuck_publisher_for_long() -> None:
    stream = io.StringIO()
    configure("info", "json", stream=stream)
    stuck = _Publisher()  # never idle: NATS hanging
    events = _events(100)
    with anyio.fail_after(5):
        await log_events(events, stuck.wait_idle, deferral=0.2)
    assert [line["event_id"] for line in _log_lines(stream)] == [e.id for e in events]
