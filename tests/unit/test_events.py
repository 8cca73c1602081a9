"""Events on the wire (`watcher.events`): subjects, the CloudEvents envelope, its headers,
its JSON form, and the one-line summary `tail` and the demo print.

These are the public contract of DESIGN.md: consumers subscribe by subject, deduplicate by
`Nats-Msg-Id` and parse the envelope, so each promise is checked as a consumer sees it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher import kinds
from watcher.events import (
    JOB_KINDS,
    WATCHER_KINDS,
    Event,
    Severity,
    deterministic_id,
    format_time,
    parse_envelope,
    subject_token,
    summary,
    watcher_event,
)

DISCOVERED = kinds.DISCOVERED.name
REMOVED = kinds.REMOVED.name
STATUS_CHANGED = kinds.STATUS_CHANGED.name
DELAY_THRESHOLD_CROSSED = kinds.DELAY_THRESHOLD_CROSSED.name
PRECHECK_FAILED = kinds.PRECHECK_FAILED.name
INIT_FAILED = kinds.INIT_FAILED.name
REGION = "cn-hangzhou"
JOB_ID = "dtsabc123"
T = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
ENVELOPE_KEYS = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "severity",
    "data",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def job_event(
    kind: str = STATUS_CHANGED,
    *,
    job_id: str = JOB_ID,
    region: str = REGION,
    severity: Severity = "critical",
    time: datetime = T,
    **data: Any,
) -> Event:
    body = {
        "job_id": job_id,
        "job_name": "orders",
        "region": region,
        "direction": "Forward",
        "status": "Failed",
        **data,
    }
    return Event(
        kind=kind,
        severity=severity,
        time=time,
        data=body,
        id=deterministic_id(region, job_id, kind),
        region=region,
        job_id=job_id,
    )


# ------------------------------------------------------------------------------ subjects


@pytest.mark.parametrize("prefix", ["dts", "acme.dts"])
@pytest.mark.parametrize("kind", JOB_KINDS)
def test_job_event_subject(prefix: str, kind: str) -> None:
    assert job_event(kind).nats_subject(prefix) == f"{prefix}.job.{REGION}.{JOB_ID}.{kind}"


@pytest.mark.parametrize("prefix", ["dts", "acme.dts"])
@pytest.mark.parametrize("kind", WATCHER_KINDS)
def test_watcher_event_subject(prefix: str, kind: str) -> None:
    event = watcher_event(kind, "info", T, {"regions": [REGION]})
    assert event.nats_subject(prefix) == f"{prefix}.watcher.{kind}"


UNSAFE_IDS = [
    ("dts.abc", "dts%2Eabc"),
    ("dts abc", "dts%20abc"),
    ("dts*", "dts%2A"),
    ("dts>", "dts%3E"),
    ("a.b c*d>e", "a%2Eb%20c%2Ad%3Ee"),
    ("tab\there\nnewline", "tab%09here%0Anewline"),
    ("nbsp\u00a0id", "nbsp%C2%A0id"),
    ("..", "%2E%2E"),
    ("", "%%e3b0c44298fc1c149afbf4c8996fb924"),
    ("dts-ok_123", "dts-ok_123"),
    ("dtsq2w3e4r5t6y7u8i", "dtsq2w3e4r5t6y7u8i"),
    ("订单ä", "%E8%AE%A2%E5%8D%95%C3%A4"),
    ("a_b", "a_b"),
    ("100%", "100%25"),
    ("cn-hangzhou", "cn-hangzhou"),
    ("a" * 64, "a" * 64),
    ("a" * 65, "a" * 32 + "%%" + hashlib.sha256(b"a" * 65).hexdigest()[:32]),
]


@pytest.mark.parametrize(("job_id", "token"), UNSAFE_IDS)
def test_unsafe_job_id_becomes_one_subject_token(job_id: str, token: str) -> None:
    subject = job_event(job_id=job_id).nats_subject("acme.dts")
    assert subject.split(".") == ["acme", "dts", "job", REGION, token, STATUS_CHANGED]
    assert subject_token(job_id) == token


def test_unsafe_region_becomes_one_subject_token() -> None:
    subject = job_event(region="cn hz.1").nats_subject("dts")
    assert subject == f"dts.job.cn%20hz%2E1.{JOB_ID}.{STATUS_CHANGED}"


@settings(max_examples=200, deadline=None)
@given(job_id=st.text(max_size=12), region=st.text(max_size=6))
def test_property_any_job_id_is_exactly_one_token(job_id: str, region: str) -> None:
    subject = job_event(job_id=job_id, region=region).nats_subject("acme.dts")
    tokens = subject.split(".")
    assert len(tokens) == 6
    assert tokens[:3] == ["acme", "dts", "job"] and tokens[5] == STATUS_CHANGED
    for token in tokens[3:5]:
        assert token
        assert not any(c.isspace() or c in "*>" for c in token)
    assert tokens[4] == subject_token(job_id)


# ------------------------------------------------------------------------------ envelope


def test_job_envelope_has_exactly_the_cloudevents_attributes() -> None:
    event = job_event(previous_status="Synchronizing", error_message="binlog purged")
    envelope = event.envelope()
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope["specversion"] == "1.0"
    assert envelope["id"] == event.id
    assert envelope["type"] == "dts.job.status_changed"
    assert envelope["subject"] == JOB_ID
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["severity"] == "critical"
    assert envelope["data"] == dict(event.data)
    assert envelope["data"]["previous_status"] == "Synchronizing"
    json.dumps(envelope)  # structured mode: one JSON document


def test_source_is_a_uri_reference_naming_the_watcher_and_region() -> None:
    hz = job_event().envelope()["source"]
    sh = job_event(region="cn-shanghai").envelope()["source"]
    watcher = watcher_event("started", "info", T, {}).envelope()["source"]
    for source in (hz, sh, watcher):
        parts = urlsplit(source)
        assert parts.path and " " not in source
        assert "dts-watcher" in source
    assert REGION in hz and "cn-shanghai" in sh
    assert len({hz, sh, watcher}) == 3


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_job_event_type(kind: str) -> None:
    event = job_event(kind)
    assert event.is_job_event
    assert event.envelope()["type"] == f"dts.job.{kind}"


@pytest.mark.parametrize("kind", WATCHER_KINDS)
def test_watcher_envelope(kind: str) -> None:
    event = watcher_event(kind, "warning", T, {"reason": "Throttling.User"})
    envelope = event.envelope()
    assert set(envelope) == ENVELOPE_KEYS
    assert not event.is_job_event
    assert envelope["type"] == f"dts.watcher.{kind}"
    assert envelope["severity"] == "warning"
    assert envelope["data"] == {"reason": "Throttling.User"}
    assert UUID.match(envelope["id"])


def test_watcher_event_ids_are_unique() -> None:
    ids = {watcher_event("heartbeat", "info", T, {}).id for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC), "2024-05-01T12:00:05Z"),
        (
            datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=8))),
            "2024-05-01T04:00:05Z",
        ),
        (
            datetime(2024, 1, 1, 0, 30, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2024-01-01T05:30:00Z",
        ),
        (datetime(2024, 5, 1, 12, 0, 5, 250000, tzinfo=UTC), "2024-05-01T12:00:05.250000Z"),
    ],
    ids=["utc", "plus-8", "minus-5", "fraction"],
)
def test_time_is_rfc3339_in_utc_with_z(moment: datetime, expected: str) -> None:
    stamp = job_event(time=moment).envelope()["time"]
    assert stamp == expected == format_time(moment)
    assert RFC3339_UTC.match(stamp)
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) == moment


def test_headers_carry_the_dedupe_id_and_content_type() -> None:
    event = job_event()
    assert event.headers() == {
        "Nats-Msg-Id": event.id,
        "Content-Type": "application/cloudevents+json",
    }
    watcher = watcher_event("started", "info", T, {})
    assert watcher.headers()["Nats-Msg-Id"] == watcher.id


def test_to_json_round_trips_through_parse_envelope() -> None:
    event = job_event(
        PRECHECK_FAILED,
        failed_items=[
            {"item_name": "CHECK_BINLOG", "error_message": "binlog 关闭", "repair_method": None}
        ],
        job_name="订单同步",
    )
    raw = event.to_json()
    assert isinstance(raw, bytes)
    assert "订单同步".encode() in raw  # UTF-8, not \u escapes
    assert parse_envelope(raw) == event.envelope()


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(JOB_KINDS),
    severity=st.sampled_from(["info", "warning", "critical"]),
    name=st.text(max_size=20),
    delay=st.none() | st.integers(0, 10**9),
    message=st.none() | st.text(max_size=20),
)
def test_property_json_round_trip(
    kind: str, severity: Severity, name: str, delay: int | None, message: str | None
) -> None:
    event = job_event(
        kind, severity=severity, job_name=name, delay_seconds=delay, error_message=message
    )
    assert parse_envelope(event.to_json()) == event.envelope()


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'"text"', b"{}", b'{"specversion": "0.3", "id": "x"}', b"not json at all"],
    ids=["list", "string", "empty-object", "old-spec", "garbage"],
)
def test_parse_envelope_rejects_what_is_not_an_envelope(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_envelope(raw)


def test_deterministic_id_is_a_uuid_derived_from_its_parts() -> None:
    one = deterministic_id("cn-hangzhou/dtsA/Forward", "status_changed", "3")
    assert UUID.match(one)
    assert one == deterministic_id("cn-hangzhou/dtsA/Forward", "status_changed", "3")
    assert one != deterministic_id("cn-hangzhou/dtsA/Forward", "status_changed", "4")
    assert one != deterministic_id("cn-hangzhou/dtsA/Reverse", "status_changed", "3")
    assert one != deterministic_id("cn-hangzhou/dtsA/Forward", "removed", "3")
    # Parts are kept apart: moving the boundary changes the id.
    assert deterministic_id("ab", "c") != deterministic_id("a", "bc")


# ------------------------------------------------------------------------------- summary


def line(event: Event) -> str:
    """What `tail` prints: the summary of the envelope as received."""
    return summary(parse_envelope(event.to_json()))


SUMMARIES = [
    pytest.param(
        job_event(
            STATUS_CHANGED,
            previous_status="Synchronizing",
            error_message="binlog purged",
        ),
        ["critical", "status_changed", "Synchronizing -> Failed: binlog purged"],
        [],
        id="status-into-failure-with-message",
    ),
    pytest.param(
        job_event(
            STATUS_CHANGED,
            severity="info",
            status="Synchronizing",
            previous_status="Failed",
            error_message="stale message",
            recovered_from="Failed",
        ),
        ["info", "Failed -> Synchronizing"],
        ["stale message"],
        id="status-recovery-without-stale-message",
    ),
    pytest.param(
        job_event(
            DELAY_THRESHOLD_CROSSED,
            severity="warning",
            status="Synchronizing",
            level="warning",
            previous_level="ok",
            delay_seconds=75,
            threshold_seconds=60,
        ),
        ["warning", "delay_threshold_crossed", "ok -> warning", "delay 75s", "threshold 60s"],
        [],
        id="delay",
    ),
    pytest.param(
        job_event(
            PRECHECK_FAILED,
            status="PrecheckFailed",
            failed_items=[
                {
                    "item_name": "CHECK_BINLOG_ON",
                    "error_message": "binlog off",
                    "repair_method": "enable binlog",
                },
                {"item_name": "CHECK_AUTH_SRC", "error_message": "denied", "repair_method": None},
            ],
        ),
        [
            "precheck_failed",
            "CHECK_BINLOG_ON: binlog off [repair: enable binlog]",
            "CHECK_AUTH_SRC: denied",
        ],
        [],
        id="precheck",
    ),
    pytest.param(
        job_event(
            INIT_FAILED,
            status="InitializeFailed",
            stage="structure",
            error_message="table exists",
        ),
        ["init_failed", "structure initialization: table exists"],
        [],
        id="init",
    ),
    pytest.param(
        job_event(DISCOVERED, severity="info", status="Synchronizing"),
        ["info", "discovered", "status Synchronizing"],
        [],
        id="discovered",
    ),
    pytest.param(
        job_event(REMOVED, severity="info", status="Finished"),
        ["removed", "status Finished"],
        [],
        id="removed",
    ),
    pytest.param(
        job_event(STATUS_CHANGED, direction="Reverse", previous_status="Synchronizing"),
        [f"{REGION}/{JOB_ID}/Reverse"],
        [],
        id="reverse-direction-shown",
    ),
]


@pytest.mark.parametrize(("event", "present", "absent"), SUMMARIES)
def test_summary_is_one_readable_line_per_kind(
    event: Event, present: list[str], absent: list[str]
) -> None:
    text = line(event)
    assert "\n" not in text
    assert text.startswith("2024-05-01T12:00:05Z ")
    assert f"{REGION}/{JOB_ID}" in text
    assert "(orders)" in text
    for fragment in present:
        assert fragment in text, (fragment, text)
    for fragment in absent:
        assert fragment not in text, (fragment, text)


def test_summary_leaves_the_forward_direction_implicit() -> None:
    text = line(job_event(previous_status="Synchronizing"))
    assert f"{REGION}/{JOB_ID} " in text
    assert "Forward" not in text


def test_summary_of_a_watcher_event() -> None:
    event = watcher_event("cycle_incomplete", "warning", T, {"reason": "Throttling.User"})
    text = line(event)
    assert "\n" not in text
    assert "warning" in text and "cycle_incomplete" in text
    assert "watcher" in text and "Throttling.User" in text


def test_a_watcher_event_summary_shows_what_matters_whole_and_marks_any_cut() -> None:
    long = "Throttling.User: Request was denied due to user flow control. " * 6
    regions = {
        "cn-hangzhou": {"error_code": "Throttling.User", "error": f"DTS cn-hangzhou: {long}"},
        "cn-shanghai": {"error_code": "Forbidden.RAM", "error": "DTS cn-shanghai: no permission"},
    }
    text = line(watcher_event("cycle_incomplete", "warning", T, {"regions": regions}))
    assert "cn-hangzhou: Throttling.User" in text and "cn-shanghai: Forbidden.RAM" in text
    assert "no permission" in text  # short messages whole
    assert "…" in text  # the long one cut, and the cut marked
    for kind in WATCHER_KINDS:  # any data, any kind: one line, no exception
        odd = line(watcher_event(kind, "info", T, {"regions": ["x"], "region": None, "n": long}))
        assert "\n" not in odd
