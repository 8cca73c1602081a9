"""`shared(job)`: equal parts of many jobs are one object, and a shared job is the job,
to the JSON (a float's sign, a time's offset included)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings

from tests.unit.test_fast_paths import page, record
from tests.unit.test_models import JOB_STATES
from watcher import fastjson
from watcher.dts.models import parse_page
from watcher.sharing import shared
from watcher.snapshot import InitStage, JobState, Precheck, PrecheckItem
from watcher.store.codec import body_text, decode_job, head_text

REGION = "cn-hangzhou"


def as_json(job: JobState) -> bytes:
    return fastjson.dumps(job.to_dict())


@settings(max_examples=200, deadline=None)
@given(job=JOB_STATES)
def test_property_a_shared_job_is_the_job(job: JobState) -> None:
    again = shared(job)
    assert again == job
    assert as_json(again) == as_json(job)
    assert as_json(shared(copy.deepcopy(job))) == as_json(job)


def test_parses_of_equal_records_share_their_parts() -> None:
    a, b = parse_page(page(record("a"), record("b")), REGION).jobs
    assert a.precheck is b.precheck and a.precheck is not None
    assert a.data_init is b.data_init and a.objects is b.objects
    assert a.source is not b.source  # endpoints differ by job: their repeated texts only
    assert a.source is not None and b.source is not None
    assert a.source.engine_name is b.source.engine_name
    # A state read back from the store shares them too.
    loaded = decode_job(head_text(a), body_text(a))
    assert loaded == a and loaded.precheck is a.precheck


def test_equal_numbers_of_other_signs_or_times_of_other_offsets_stay_apart() -> None:
    zero = JobState(REGION, "a", "Forward", "a", "Synchronizing", precheck=Precheck("x", 0.0))
    negative = JobState(REGION, "b", "Forward", "b", "Synchronizing", precheck=Precheck("x", -0.0))
    assert shared(zero).precheck is not shared(negative).precheck
    assert as_json(shared(negative)) == as_json(negative)
    stage = InitStage("Finished", -0.0)
    assert (
        str(shared(JobState(REGION, "c", "F", "c", "S", data_init=stage)).data_init.percent)
        == "-0.0"
    )  # type: ignore[union-attr]
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=8)))
    utc = shared(JobState(REGION, "d", "F", "d", "S", create_time=moment))
    east = shared(JobState(REGION, "e", "F", "e", "S", create_time=elsewhere))
    assert utc.create_time is not east.create_time
    assert east.to_dict()["create_time"] == elsewhere.isoformat()


def test_items_are_shared_across_prechecks_that_differ() -> None:
    ok = PrecheckItem("CHECK_CONN_SRC", "Success")
    first = shared(JobState(REGION, "a", "F", "a", "S", precheck=Precheck("Failed", 100.0, (ok,))))
    item = PrecheckItem("CHECK_CONN_SRC", "Success")
    failed = PrecheckItem("CHECK_AUTH_SRC", "Failed", "denied")
    second = shared(
        JobState(REGION, "b", "F", "b", "S", precheck=Precheck("Failed", 100.0, (item, failed)))
    )
    assert first.precheck is not None and second.precheck is not None
    assert second.precheck.items[0] is first.precheck.items[0]
