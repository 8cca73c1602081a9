"""Matchers, silences and maintenance windows (`watcher.settings.alerting`,
`watcher.silencing`), and the `silenced` attribute of the events they cover.

Windows are wall-clock times in their zone: the tables include windows across midnight
and the two daylight-saving changes of a year (zoneinfo), with the moments given in UTC
as the watcher's clock gives them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from watcher.detect import Memory, Rules, detect
from watcher.events import json_schema
from watcher.settings.alerting import MaintenanceWindow, Matcher, check_glob, parse_duration
from watcher.silencing import NO_SILENCES, Silence, Silencing, window_active
from watcher.snapshot import FAILED, JobState, RegionOutcome, Snapshot

HZ = "cn-hangzhou"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def job(**fields: Any) -> JobState:
    base: dict[str, Any] = {
        "region": HZ,
        "job_id": "dtsabc",
        "direction": "Forward",
        "job_name": "orders-eu",
        "status": "Synchronizing",
        "job_type": "sync",
        "account": "default",
        "tags": (("env", "prod"), ("team", "orders")),
    }
    base.update(fields)
    return JobState(**base)


# ------------------------------------------------------------------------------ matchers

MATCHES = [
    ({}, True),
    ({"job_id": "dtsabc"}, True),
    ({"job_id": "dtsab"}, False),
    ({"job_name": "orders-*"}, True),
    ({"job_name": "orders-??"}, True),
    ({"job_name": "orders-[!e]*"}, False),
    ({"job_name": "Orders-*"}, False),  # case matters, as in a shell
    ({"job_name": "*-eu"}, True),
    ({"region": HZ}, True),
    ({"region": "cn-beijing"}, False),
    ({"job_type": "sync"}, True),
    ({"job_type": "migration"}, False),
    ({"account": "default"}, True),
    ({"account": "prod"}, False),
    ({"tags": {"env": "prod"}}, True),
    ({"tags": {"env": "prod", "team": "orders"}}, True),
    ({"tags": {"env": "prod", "team": "crm"}}, False),
    ({"tags": {"missing": ""}}, False),
    ({"job_id": "dtsabc", "region": "cn-beijing"}, False),  # every key given must match
]


@pytest.mark.parametrize(("fields", "expected"), MATCHES, ids=[str(f) for f, _ in MATCHES])
def test_matcher(fields: dict[str, Any], expected: bool) -> None:
    assert Matcher(**fields).matches(job()) is expected


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"job_name": "ab[c"}, "never closed"),
        ({"job_name": ""}, "empty"),
        ({"region": "Hangzhou 1"}, "region id"),
        ({"job_type": "etl"}, "job_type"),
        ({"tags": {"": "x"}}, "tag key"),
        ({"job_id": ""}, "job_id"),
        ({"jobid": "x"}, "jobid"),
    ],
)
def test_invalid_matchers_are_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Matcher(**fields)


def test_globs_with_classes() -> None:
    assert check_glob("a[]]b") == "a[]]b"  # "]" first in a class is literal
    assert check_glob("a[!]]*") == "a[!]]*"
    with pytest.raises(ValueError, match="never closed"):
        check_glob("a[!]")
    assert Matcher(job_name="a[]]b").matches(job(job_name="a]b"))


def test_matcher_description() -> None:
    assert Matcher().describe() == "*" and Matcher().empty
    described = Matcher(region=HZ, tags={"env": "test"}, job_name="x*").describe()
    assert described == "job_name=x* region=cn-hangzhou tag:env=test"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("45", 45),
        ("0.5s", 0.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1x", "-5m", "0", "0s", "h", "inf"])
def test_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ----------------------------------------------------------------------------- windows


def window(
    start: str, end: str, days: list[str] | None = None, zone: str = "UTC"
) -> MaintenanceWindow:
    fields: dict[str, Any] = {
        "name": "w",
        "match": {},
        "start": start,
        "end": end,
        "timezone": zone,
    }
    if days is not None:
        fields["weekdays"] = days
    return MaintenanceWindow(**fields)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


WINDOWS = [
    # (window, moment in UTC, active?)  2024-05-03 is a Friday.
    (window("02:00", "04:00"), "2024-05-03T01:59:59", False),
    (window("02:00", "04:00"), "2024-05-03T02:00:00", True),
    (window("02:00", "04:00"), "2024-05-03T03:59:59", True),
    (window("02:00", "04:00"), "2024-05-03T04:00:00", False),
    (window("22:00", "02:00", ["fri"]), "2024-05-03T21:59:00", False),
    (window("22:00", "02:00", ["fri"]), "2024-05-03T22:00:00", True),
    (window("22:00", "02:00", ["fri"]), "2024-05-04T01:30:00", True),  # Saturday morning
    (window("22:00", "02:00", ["fri"]), "2024-05-04T02:00:00", False),
    (window("22:00", "02:00", ["fri"]), "2024-05-04T22:30:00", False),  # Saturday evening
    (window("22:00", "02:00", ["fri"]), "2024-05-03T01:00:00", False),  # Friday morning
    (window("22:00", "24:00", ["fri"]), "2024-05-03T23:59:59", True),
    (window("22:00", "24:00", ["fri"]), "2024-05-04T00:00:00", False),
    (window("09:00", "17:00", ["Monday", "tue"]), "2024-05-06T10:00:00", True),
    (window("09:00", "17:00", ["Monday", "tue"]), "2024-05-08T10:00:00", False),
    # Asia/Shanghai is UTC+8 all year: 02:00-04:00 there is 18:00-20:00 UTC the day before.
    (window("02:00", "04:00", ["sat"], "Asia/Shanghai"), "2024-05-03T18:30:00", True),
    (window("02:00", "04:00", ["sat"], "Asia/Shanghai"), "2024-05-04T02:30:00", False),
    # New York: UTC-4 in summer (EDT), UTC-5 in winter (EST).
    (window("01:00", "03:00", zone="America/New_York"), "2024-07-01T05:30:00", True),
    (window("01:00", "03:00", zone="America/New_York"), "2024-01-15T05:30:00", False),
    (window("01:00", "03:00", zone="America/New_York"), "2024-01-15T06:30:00", True),
]


@pytest.mark.parametrize(
    ("win", "moment", "active"),
    WINDOWS,
    ids=[f"{w.start}-{w.end}{w.weekdays}{w.timezone}@{m}" for w, m, _ in WINDOWS],
)
def test_window(win: MaintenanceWindow, moment: str, active: bool) -> None:
    assert window_active(win, utc(moment)) is active


def minutes_active(win: MaintenanceWindow, start: datetime, hours: int) -> int:
    return sum(window_active(win, start + timedelta(minutes=m)) for m in range(hours * 60))


def test_daylight_saving_spring_forward_skips_the_missing_hour() -> None:
    # 2024-03-10 in New York: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    win = window("01:30", "03:30", ["sun"], "America/New_York")
    day = utc("2024-03-10T04:00:00")  # 23:00 EST, Saturday
    # 01:30-02:00 EST (30 min) and 03:00-03:30 EDT (30 min): one hour of wall-clock window.
    assert minutes_active(win, day, 8) == 60
    assert window_active(win, utc("2024-03-10T06:45:00"))  # 01:45 EST
    assert window_active(win, utc("2024-03-10T07:15:00"))  # 03:15 EDT
    assert not window_active(win, utc("2024-03-10T07:30:00"))  # 03:30 EDT


def test_daylight_saving_fall_back_covers_the_repeated_hour_twice() -> None:
    # 2024-11-03 in New York: 02:00 EDT goes back to 01:00 EST (06:00 UTC).
    win = window("01:00", "02:00", ["sun"], "America/New_York")
    day = utc("2024-11-03T03:00:00")  # 23:00 EDT, Saturday
    assert minutes_active(win, day, 8) == 120  # 01:00-02:00 EDT, then 01:00-02:00 EST
    assert window_active(win, utc("2024-11-03T05:30:00"))  # 01:30 EDT
    assert window_active(win, utc("2024-11-03T06:30:00"))  # 01:30 EST


def test_a_window_across_midnight_on_a_dst_night() -> None:
    # Berlin, 2024-03-31: 02:00 CET jumps to 03:00 CEST. Saturday 23:00 to Sunday 04:00.
    win = window("23:00", "04:00", ["sat"], "Europe/Berlin")
    night = utc("2024-03-30T21:00:00")  # 22:00 CET
    assert minutes_active(win, night, 8) == 4 * 60  # five wall-clock hours, one skipped
    assert window_active(win, utc("2024-03-31T01:59:00"))  # 03:59 CEST, Sunday
    assert not window_active(win, utc("2024-03-31T02:00:00"))  # 04:00 CEST


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"start": "25:00"}, "time of day"),
        ({"start": "7pm"}, "HH:MM"),
        ({"end": "24:01"}, "time of day"),
        ({"start": "24:00"}, "time of day"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"timezone": "../etc/passwd"}, "time zone"),
        ({"weekdays": ["funday"]}, "weekday"),
        ({"weekdays": []}, "at least 1"),
        ({"name": "two words"}, "window name"),
        ({"start": "02:00", "end": "02:00"}, "both"),
        ({"match": {"job_name": "x["}}, "never closed"),
    ],
)
def test_invalid_windows_are_refused(fields: dict[str, Any], problem: str) -> None:
    base: dict[str, Any] = {"name": "w", "match": {}, "start": "02:00", "end": "04:00"}
    with pytest.raises(ValidationError, match=problem):
        MaintenanceWindow(**{**base, **fields})


# ---------------------------------------------------------------------------- silences


def silence(sid: str = "s1", start: float = 0, end: float = 3600, **match: Any) -> Silence:
    return Silence(
        sid,
        Matcher(**match),
        T0 + timedelta(seconds=start),
        T0 + timedelta(seconds=end),
        "ops",
        "why",
    )


def test_a_silence_round_trips_through_its_json() -> None:
    original = silence(job_name="orders-*", tags={"env": "prod"})
    assert Silence.from_json(original.to_json()) == original
    assert json.loads(original.to_json())["start"] == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"id": "x", "start": "2024-05-01T12:00:00Z"}',
        b'{"id": "x", "start": "2024-05-01T12:00:00", "end": "2024-05-01T13:00:00Z"}',
        b'{"id": "x", "start": "yesterday", "end": "2024-05-01T13:00:00Z"}',
        b'{"id": "", "start": "2024-05-01T12:00:00Z", "end": "2024-05-01T13:00:00Z"}',
        b'{"id": "x", "match": {"colour": "red"}, "start": "2024-05-01T12:00:00Z", '
        b'"end": "2024-05-01T13:00:00Z"}',
        b"\xff\xfe",
    ],
)
def test_what_is_not_a_silence_says_so(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"not a silence|isoformat|Invalid"):
        Silence.from_json(raw)


def test_covering_order_and_times() -> None:
    windows = [window("11:00", "13:00")]
    silencing = Silencing(
        [silence("late", 60, 600, job_id="dtsabc"), silence("early", 0, 120, region=HZ)], windows
    )
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    assert silencing.covering(job(), at(90)) == "early"  # the oldest active silence first
    assert silencing.covering(job(), at(300)) == "late"
    assert silencing.covering(job(), at(600)) == "maintenance:w"  # silences end exclusive
    assert silencing.covering(job(), at(3600)) is None
    assert silencing.covering(job(job_id="other", region="cn-beijing"), at(90)) == "maintenance:w"
    assert [sid for sid, _ in silencing.active(at(90))] == ["early", "late", "maintenance:w"]
    assert not NO_SILENCES and NO_SILENCES.covering(job(), T0) is None


def test_covered_events_carry_the_silence_and_validate_against_the_schema() -> None:
    silencing = Silencing([silence("s-42", job_id="dtsabc")])
    rules = Rules()
    current = Snapshot.of(
        [job(status=FAILED), job(job_id="free", status=FAILED)], [RegionOutcome(HZ)]
    )
    detection = detect(
        None, current, Memory(), rules, T0 + timedelta(seconds=5), silences=silencing
    )
    marks = {(e.job_id, e.kind): e.silenced for e in detection.events}
    assert marks == {
        ("dtsabc", "discovered"): "s-42",
        ("dtsabc", "status_changed"): "s-42",
        ("free", "discovered"): None,
        ("free", "status_changed"): None,
    }
    schema = json_schema()
    for event in detection.events:
        envelope = json.loads(event.to_json())
        jsonschema.validate(envelope, schema)
        assert ("silenced" in envelope) == (event.silenced is not None)
        if event.silenced:
            assert envelope["silenced"] == "s-42"
            assert event.log_fields()["silenced"] == "s-42"
    bad = json.loads(detection.events[0].to_json())
    bad["silenced"] = ""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
