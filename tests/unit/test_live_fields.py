"""Live fields apart: a record that changed only in its delay, checkpoint or throughput
is not parsed again, and gives exactly the job a full parse gives.

`JobCache` with the listing API's `LiveFields` fingerprints a record without them; when
the rest matches, only they are read again (`watcher.dts.live`) into the job remembered.
Whatever the live values (numbers, text, junk, missing, another letter case, the
fallback to DataSynchronizationStatus, a migration job's milliseconds, a two-way entry's
reverse half) and whatever the record's quirks, the result is the full parse's, to the
JSON: compared by `to_dict` through the fast JSON encoder, which tells 0.0 from -0.0.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dts_sim import JobSpec
from dts_sim.jobs import QUIRKS
from dts_sim.render import job_to_api
from dts_sim.render_dtsjobs import dts_job_to_api
from tests.unit.test_models import INSTANCES, INTERESTING_TEXT, SCALARS, SMALL_JSON
from watcher import fastjson
from watcher.dts.dtsjobs import parse_dts_jobs_page
from watcher.dts.live import DTS_JOBS_LIVE, LEGACY_LIVE
from watcher.dts.models import parse_page
from watcher.dts.record_cache import DTS_JOBS_KEYS, JobCache
from watcher.live import LIVE_FIELDS, same_but_live, with_live
from watcher.snapshot import JobState

REGION = "cn-hangzhou"
CREATED = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
ABSENT = object()

# What a live field may hold: anything a tolerant reader must take.
VALUES = SCALARS | INTERESTING_TEXT | SMALL_JSON | st.just(ABSENT)
NUMBERS = st.integers(-5, 10**7) | st.floats(-1e6, 1e9, allow_nan=False) | st.just(-0.0)
LIVE_VALUES = NUMBERS | NUMBERS.map(str) | VALUES


def spelled(name: str) -> st.SearchStrategy[str]:
    """A key as DTS spells it, mostly, or in another letter case."""
    return st.sampled_from([name, name, name, name.lower(), name.upper()])


def performance(rps: str, flow: str) -> st.SearchStrategy[Any]:
    inner = st.dictionaries(
        st.one_of(spelled(rps), spelled(flow), st.text(max_size=4)), LIVE_VALUES, max_size=3
    )
    return inner | VALUES


def sync_status() -> st.SearchStrategy[Any]:
    return st.dictionaries(st.one_of(spelled("Delay"), spelled("Status")), LIVE_VALUES) | VALUES


def live_changes(rps: str, flow: str, checkpoint: bool) -> st.SearchStrategy[dict[str, Any]]:
    """New values for some of a record's live fields (ABSENT: the key goes)."""
    fields = {
        "Delay": LIVE_VALUES,
        "Performance": performance(rps, flow),
        "DataSynchronizationStatus": sync_status(),
    }
    if checkpoint:
        fields["Checkpoint"] = LIVE_VALUES
    return st.fixed_dictionaries(
        {}, optional={k: st.tuples(spelled(k), v) for k, v in fields.items()}
    )


def applied(raw: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for canonical, (key, value) in changes.items():
        out.pop(canonical, None)
        if value is not ABSENT:
            out[key] = value
    return out


SPECS = st.builds(
    dict,
    status=st.sampled_from(["Synchronizing", "Failed", "Suspending", "NotStarted", "Migrating"]),
    delay=st.integers(0, 400),
    pay_type=st.sampled_from(["PrePaid", "PostPaid"]),
    quirks=st.lists(st.sampled_from(QUIRKS), max_size=3, unique=True),
    job_type=st.sampled_from(["sync", "migration", "subscribe"]),
    two_way=st.booleans(),
)


def specs(drawn: dict[str, Any], n: int) -> tuple[JobSpec, JobSpec | None]:
    status = drawn["status"]
    job_type = drawn["job_type"]
    if job_type != "migration" and status == "Migrating":
        status = "Synchronizing"
    common = {
        "id": f"dtsjob{n}",
        "region": REGION,
        "status": status,
        "delay": drawn["delay"],
        "pay_type": drawn["pay_type"],
        "quirks": drawn["quirks"],
        "job_type": job_type,
        "tags": {"env": "prod"},
    }
    forward = JobSpec(**common)
    reverse = JobSpec(**common, direction="Reverse") if drawn["two_way"] else None
    return forward, reverse


def decoded(body: dict[str, Any]) -> dict[str, Any] | None:
    """The body as the client hands it over: decoded by orjson (None if orjson would not
    have decoded such a document)."""
    try:
        text = orjson.dumps(body)
    except orjson.JSONEncodeError:
        return None
    return fastjson.loads(text)[0]  # type: ignore[no-any-return]


def as_json(jobs: tuple[JobState, ...]) -> bytes:
    return fastjson.dumps([job.to_dict() for job in jobs])


def legacy_page(records: list[Any]) -> dict[str, Any]:
    return {"TotalRecordCount": len(records), "SynchronizationInstances": records}


def dts_page(records: list[Any]) -> dict[str, Any]:
    return {"Success": True, "TotalRecordCount": len(records), "DtsJobList": records}


def parse_legacy(body: dict[str, Any], cache: JobCache | None) -> tuple[JobState, ...]:
    return parse_page(body, REGION, cache).jobs


def parse_dts(body: dict[str, Any], cache: JobCache | None, asked: str) -> tuple[JobState, ...]:
    return parse_dts_jobs_page(body, REGION, asked, cache=cache).jobs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=st.lists(SPECS, min_size=1, max_size=3), data=st.data())
def test_property_legacy_live_changes_give_the_full_parse(
    jobs: list[dict[str, Any]], data: Any
) -> None:
    records = [job_to_api(specs(d, n)[0], (), CREATED) for n, d in enumerate(jobs)]
    first = decoded(legacy_page(records))
    assert first is not None
    cache = JobCache(live=LEGACY_LIVE)
    before = parse_legacy(first, cache)
    for _ in range(3):  # cycle after cycle, each from the last
        moved = [applied(r, data.draw(live_changes("RPS", "FLOW", False))) for r in records]
        body = decoded(legacy_page(moved))
        if body is None:
            continue
        cache = JobCache(cache.seen, live=LEGACY_LIVE)
        fresh = parse_legacy(copy.deepcopy(body), None)
        cached = parse_legacy(body, cache)
        assert as_json(cached) == as_json(fresh)
        assert cached == fresh
        for old, new in zip(before, cached, strict=True):
            assert same_but_live(old, new)
        before, records = cached, moved


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=st.lists(SPECS, min_size=1, max_size=3), data=st.data())
def test_property_dts_jobs_live_changes_give_the_full_parse(
    jobs: list[dict[str, Any]], data: Any
) -> None:
    asked = jobs[0]["job_type"]
    records = []
    for n, drawn in enumerate(jobs):
        forward, reverse = specs({**drawn, "job_type": asked}, n)
        records.append(dts_job_to_api(forward, reverse, CREATED, drawn["quirks"]))
    first = decoded(dts_page(records))
    assert first is not None
    cache = JobCache(keys=DTS_JOBS_KEYS, live=DTS_JOBS_LIVE)
    parse_dts(first, cache, asked)
    for _ in range(3):
        moved = []
        for record in records:
            entry = applied(record, data.draw(live_changes("Rps", "Flow", True)))
            if isinstance(entry.get("ReverseJob"), dict):
                entry["ReverseJob"] = applied(
                    entry["ReverseJob"], data.draw(live_changes("Rps", "Flow", True))
                )
            moved.append(entry)
        body = decoded(dts_page(moved))
        if body is None:
            continue
        cache = JobCache(cache.seen, keys=DTS_JOBS_KEYS, live=DTS_JOBS_LIVE)
        fresh = parse_dts(copy.deepcopy(body), None, asked)
        cached = parse_dts(body, cache, asked)
        assert as_json(cached) == as_json(fresh)
        assert cached == fresh
        records = moved


@settings(max_examples=80, deadline=None)
@given(
    records=st.lists(INSTANCES, min_size=1, max_size=3),
    data=st.data(),
)
def test_property_shaped_records_with_live_changes_give_the_full_parse(
    records: list[Any], data: Any
) -> None:
    """Records of any shape (keys in any case, values of any kind), their live fields
    changed: a cached parse is always a fresh one."""
    cache = JobCache(live=LEGACY_LIVE)
    for _ in range(3):
        body = decoded(legacy_page(records))
        if body is not None:
            fresh = parse_legacy(copy.deepcopy(body), None)
            cached = parse_legacy(body, cache)
            assert as_json(cached) == as_json(fresh)
            cache = JobCache(cache.seen, live=LEGACY_LIVE)
        records = [
            applied(r, data.draw(live_changes("RPS", "FLOW", False))) if isinstance(r, dict) else r
            for r in records
        ]


def test_a_moved_delay_is_read_without_parsing_the_record_again() -> None:
    forward = JobSpec(id="dtsa", region=REGION, delay=3, tags={"env": "prod"})
    cache = JobCache(live=LEGACY_LIVE)
    (a,) = parse_legacy(decoded(legacy_page([job_to_api(forward, (), CREATED)])) or {}, cache)
    moved = job_to_api(forward, (), CREATED, delay=40)
    moved["Performance"] = {"RPS": "7", "FLOW": "1.5MB/s"}
    cache = JobCache(cache.seen, live=LEGACY_LIVE)
    (b,) = parse_legacy(decoded(legacy_page([moved])) or {}, cache)
    assert (b.delay_seconds, b.rps, b.flow_mbps) == (40, 7.0, 1.5)
    # Not parsed again: every other field is the very object the first parse made.
    for name in JobState.__dataclass_fields__:
        if name not in LIVE_FIELDS:
            assert getattr(b, name) is getattr(a, name), name
    # Nothing moved since: the very same job.
    cache = JobCache(cache.seen, live=LEGACY_LIVE)
    (c,) = parse_legacy(decoded(legacy_page([moved])) or {}, cache)
    assert c is b


def test_a_moved_checkpoint_of_a_two_way_entry_moves_only_that_half() -> None:
    forward = JobSpec(id="dtsa", region=REGION, delay=3, checkpoint=1_700_000_000)
    reverse = JobSpec(id="dtsa", region=REGION, direction="Reverse", checkpoint=1_700_000_000)
    entry = dts_job_to_api(forward, reverse, CREATED)
    cache = JobCache(keys=DTS_JOBS_KEYS, live=DTS_JOBS_LIVE)
    a, ra = parse_dts(decoded(dts_page([entry])) or {}, cache, "sync")
    entry["ReverseJob"]["Checkpoint"] = "1700000007"
    cache = JobCache(cache.seen, keys=DTS_JOBS_KEYS, live=DTS_JOBS_LIVE)
    b, rb = parse_dts(decoded(dts_page([entry])) or {}, cache, "sync")
    assert b is a
    assert rb.checkpoint == "1700000007" and rb.job_name is ra.job_name
    assert (rb.direction, rb.delay_seconds) == ("Reverse", ra.delay_seconds)


def test_a_stable_change_beside_a_live_one_goes_through_the_full_models() -> None:
    spec = JobSpec(id="dtsa", region=REGION, delay=3)
    cache = JobCache(live=LEGACY_LIVE)
    (a,) = parse_legacy(decoded(legacy_page([job_to_api(spec, (), CREATED)])) or {}, cache)
    failed = job_to_api(spec.model_copy(update={"status": "Failed"}), (), CREATED, delay=9)
    cache = JobCache(cache.seen, live=LEGACY_LIVE)
    (b,) = parse_legacy(decoded(legacy_page([failed])) or {}, cache)
    assert (b.status, b.delay_seconds) == ("Failed", 9)
    assert b.job_name is not a.job_name  # parsed again
    assert b == parse_legacy(decoded(legacy_page([failed])) or {}, None)[0]


@pytest.mark.parametrize(
    ("before", "after", "same"),
    [
        ((1, None, 0.5, 0.0), (1, None, 0.5, 0.0), True),
        ((1, None, 0.5, 0.0), (1, None, 0.5, -0.0), False),  # equal numbers, not equal JSON
        ((1, None, None, None), (2, None, None, None), False),
        ((1, "5", None, None), (1, "6", None, None), False),
        ((0, None, None, None), (None, None, None, None), False),
    ],
)
def test_with_live_keeps_the_job_only_when_nothing_moved(
    before: tuple[Any, ...], after: tuple[Any, ...], same: bool
) -> None:
    job = JobState(REGION, "a", "Forward", "a", "Synchronizing")
    start = with_live(job, *before)
    moved = with_live(start, *after)
    assert (moved is start) is same
    assert [getattr(moved, name) for name in LIVE_FIELDS] == list(after)
    assert same_but_live(start, moved)
