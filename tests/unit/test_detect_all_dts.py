"""Detection for all of DTS: Retrying with its retry state, the new failure statuses,
error details, delay while Migrating, shards of several accounts, job types a listing
covers, and a change of API that must neither remove nor rediscover a job."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from watcher.detect import Detection, Memory, PageByPage, Rules, detect
from watcher.events import Event, encode, json_schema
from watcher.snapshot import ErrorDetail, JobState, RegionOutcome, RetryState, Snapshot

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HZ = "cn-hangzhou"
ALL = frozenset({"sync", "migration", "subscribe"})
RETRY = RetryState(
    retrying=True,
    count=3,
    retry_seconds=120,
    max_retry_seconds=43200,
    target="srcDB",
    module="reader",
    error_message="DTS-30011: connection refused",
)
DETAILS = (ErrorDetail("DTS-30011", "https://help.aliyun.com/document_detail/462133.html"),)


def dts_job(
    status: str = "Synchronizing",
    delay: int | None = 0,
    *,
    job_id: str = "j1",
    instance_id: str | None = "dtsj1",
    job_type: str = "sync",
    account: str = "default",
    direction: str = "Forward",
    **extra: Any,
) -> JobState:
    return JobState(
        region=HZ,
        job_id=job_id,
        direction=direction,
        job_name=f"name-{job_id}",
        status=status,
        account=account,
        job_type=job_type,
        delay_seconds=delay,
        instance_id=instance_id,
        **extra,
    )


def legacy(status: str = "Synchronizing", delay: int | None = 0, **extra: Any) -> JobState:
    """The same job as the legacy listing shows it: its id is the instance id."""
    return JobState(HZ, "dtsj1", "Forward", "name-j1", status, delay_seconds=delay, **extra)


def snap(
    *jobs: JobState,
    accounts: Sequence[str] = ("default",),
    failed: Sequence[str] = (),
    types: frozenset[str] = ALL,
) -> Snapshot:
    outcomes = [RegionOutcome(HZ, account=a, job_types=types) for a in accounts]
    outcomes += [RegionOutcome(HZ, error="Forbidden.RAM", account=a) for a in failed]
    return Snapshot.of(jobs, outcomes, T0)


def run(snapshots: Sequence[Snapshot], rules: Rules | None = None) -> list[Detection]:
    previous: Snapshot | None = None
    memory = Memory()
    out = []
    for index, current in enumerate(snapshots):
        found = detect(previous, current, memory, rules or Rules(), T0 + timedelta(minutes=index))
        out.append(found)
        previous, memory = found.baseline, found.memory
    return out


def kinds(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.kind, e.severity, e.data["status"]) for e in events]


def valid(event: Event) -> dict[str, Any]:
    envelope = json.loads(encode(event))
    jsonschema.validate(envelope, json_schema())
    return dict(envelope["data"])


def test_entering_retrying_is_a_warning_with_the_retry_state() -> None:
    _, second = run([snap(dts_job()), snap(dts_job("Retrying", retry=RETRY))])
    assert kinds(second.events) == [("status_changed", "warning", "Retrying")]
    data = valid(second.events[0])
    assert data["retry"] == {
        "count": 3,
        "retry_seconds": 120,
        "max_retry_seconds": 43200,
        "target": "srcDB",
        "module": "reader",
        "error_message": "DTS-30011: connection refused",
    }
    assert data["job_type"] == "sync" and data["account"] == "default"


def test_a_job_first_seen_retrying_is_announced_with_its_retry_state() -> None:
    (first,) = run([snap(dts_job("Retrying", retry=RETRY))])
    assert kinds(first.events) == [
        ("discovered", "info", "Retrying"),
        ("status_changed", "warning", "Retrying"),
    ]
    assert valid(first.events[1])["retry"]["count"] == 3


@pytest.mark.parametrize(
    ("job_type", "before", "after"),
    [
        ("migration", "Migrating", "MigrationFailed"),
        ("sync", "Modifying", "ModifyFailed"),
        ("subscribe", "Normal", "Abnormal"),
    ],
)
def test_new_failures_are_critical_with_error_details(
    job_type: str, before: str, after: str
) -> None:
    _, second = run(
        [
            snap(dts_job(before, job_type=job_type)),
            snap(
                dts_job(after, job_type=job_type, error_message="it broke", error_details=DETAILS)
            ),
        ]
    )
    assert kinds(second.events) == [("status_changed", "critical", after)]
    data = valid(second.events[0])
    assert data["error_details"] == [
        {
            "error_code": "DTS-30011",
            "help_url": "https://help.aliyun.com/document_detail/462133.html",
        }
    ]
    assert data["job_type"] == job_type
    assert "retry" not in data


@pytest.mark.parametrize("status", ["MigrationFailed", "ModifyFailed", "Abnormal"])
def test_new_failures_are_announced_on_first_sight(status: str) -> None:
    (first,) = run([snap(dts_job(status))])
    assert kinds(first.events)[1:] == [("status_changed", "critical", status)]


def test_delay_is_judged_while_migrating() -> None:
    steps = [
        dts_job("Migrating", 5, job_type="migration"),
        dts_job("Migrating", 400, job_type="migration"),
    ]
    _, second = run([snap(j) for j in steps])
    assert [(e.kind, e.data.get("level")) for e in second.events] == [
        ("delay_threshold_crossed", "critical")
    ]


def test_a_failing_account_does_not_blind_another() -> None:
    ours = dts_job(job_id="a1", instance_id="dtsa1", account="prod")
    theirs = dts_job(job_id="b1", instance_id="dtsb1", account="dev")
    _, second = run(
        [
            snap(ours, theirs, accounts=("prod", "dev")),
            snap(
                dts_job("Failed", job_id="a1", instance_id="dtsa1", account="prod"),
                accounts=("prod",),
                failed=("dev",),
            ),
        ]
    )
    # prod's change is seen; dev's job, unread, is neither judged nor removed
    assert kinds(second.events) == [("status_changed", "critical", "Failed")]
    assert second.events[0].data["account"] == "prod"
    assert theirs.key in second.baseline.jobs
    assert second.baseline.regions["dev/cn-hangzhou"].error == "Forbidden.RAM"


def test_only_the_job_types_a_listing_covers_can_be_proven_gone() -> None:
    migration = dts_job("Migrating", job_id="m1", instance_id="dtsm1", job_type="migration")
    sync = dts_job(job_id="s1", instance_id="dtss1")
    detections = run([snap(migration, sync)] + [snap(sync, types=frozenset({"sync"}))] * 3)
    # never removed: the migration listing is no longer read, so it is forgotten quietly
    assert all(not d.events for d in detections[1:])
    assert migration.key not in detections[-1].baseline.jobs
    assert sync.key in detections[-1].baseline.jobs


def test_a_gone_job_of_a_covered_type_is_removed() -> None:
    migration = dts_job("Migrating", job_id="m1", instance_id="dtsm1", job_type="migration")
    detections = run([snap(migration), snap(), snap()])
    assert [e.kind for e in detections[2].events] == ["removed"]


def test_switching_the_api_neither_removes_nor_rediscovers_a_job() -> None:
    """Legacy -> DescribeDtsJobs -> legacy: the same job under its other key each time."""
    legacy_only = frozenset({"sync"})
    detections = run(
        [
            snap(legacy(delay=75), types=legacy_only),  # the legacy listing
            snap(dts_job(delay=80)),  # DescribeDtsJobs: j1 of instance dtsj1
            snap(dts_job(delay=80)),
            snap(dts_job("Failed", delay=80)),
            snap(legacy("Failed", delay=80), types=legacy_only),  # and back
            snap(legacy("Failed", delay=80), types=legacy_only),
        ]
    )
    said = [[(e.kind, e.data["job_id"]) for e in d.events] for d in detections]
    assert said == [
        [("discovered", "dtsj1"), ("delay_threshold_crossed", "dtsj1")],
        [],  # not discovered again, its warning level kept
        [],
        [("status_changed", "j1")],
        [],  # and the legacy key takes it back: nothing removed, nothing new
        [],
    ]
    assert list(detections[-1].baseline.jobs) == [legacy().key]
    assert detections[-1].memory.jobs[legacy().key]  # the delay level came along


def test_the_api_switch_in_page_by_page_mode_is_quiet_too() -> None:
    (first,) = run([snap(legacy(delay=75), types=frozenset({"sync"}))])
    pages = PageByPage(first.baseline, first.memory, Rules())
    found = pages.judge([dts_job(delay=80)], T0)
    assert found.events == []
    rest = pages.finish(snap(dts_job(delay=80)), T0)
    assert rest.events == []
    assert list(rest.baseline.jobs) == [dts_job().key]


def test_two_halves_of_a_two_way_job_stay_apart() -> None:
    forward = dts_job(job_id="j1", direction="Forward")
    reverse = dts_job(job_id="j1r", direction="Reverse")
    _, second = run(
        [
            snap(forward, reverse),
            snap(forward, dts_job("Failed", job_id="j1r", direction="Reverse")),
        ]
    )
    assert [(e.kind, e.data["direction"]) for e in second.events] == [("status_changed", "Reverse")]
