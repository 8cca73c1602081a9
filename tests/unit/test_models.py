"""Response parsing (`watcher.dts.models`) and the normalized job state (`watcher.snapshot`).

The contract under test: whatever shape a DescribeSynchronizationJobs body takes, parsing
never raises; a value it cannot understand becomes None; a job without an id is skipped
and counted; everything it can understand comes out in one normalized form.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from watcher.dts.models import (
    CheckItem,
    DataSynchronizationStatus,
    DescribeSynchronizationJobsResponse,
    EndpointModel,
    InitializationStatus,
    Performance,
    PrecheckStatus,
    SynchronizationInstance,
    SynchronizationObject,
    TableName,
    Tag,
    parse_page,
)
from watcher.snapshot import (
    KNOWN_STATUSES,
    Endpoint,
    InitStage,
    JobKey,
    JobState,
    Precheck,
    PrecheckItem,
    RegionOutcome,
    Snapshot,
    SyncObject,
    normalize_status,
)

REGION = "cn-hangzhou"

# The "Sample success responses / JSON format" body of the reference, as published.
SAMPLE_CHECK_ITEMS = [
    "CHECK_CONN_SRC",
    "CHECK_AUTH_SRC",
    "CHECK_CONN_DEST",
    "CHECK_AUTH_DEST",
    "CHECK_BINLOG_ON",
    "CHECK_BINLOG_MODE",
    "CHECK_BINLOG_ROW_IMAGE",
    "CHECK_SERVER_ID",
    "CHECK_BINLOG_EXIST",
    "CHECK_ENGINE",
    "CHECK_MYSQL_PASSOWRD_FORMAT",
    "CHECK_SRC",
    "CHECK_SAME_OBJ",
    "CHECK_SQL_MODE",
    "CHECK_SAME_USER",
    "CHECK_TOPOLOGY",
]
SAMPLE: dict[str, Any] = {
    "TotalRecordCount": 100,
    "SynchronizationInstances": [
        {
            "Status": "synchronizing",
            "SynchronizationObjects": [
                {
                    "TableIncludes": [],
                    "TableExcludes": [],
                    "SchemaName": "dtstestdatabase",
                    "NewSchemaName": "newdtstestdatabase",
                }
            ],
            "DataInitializationStatus": {
                "Status": "Finished",
                "Progress": "200001",
                "Percent": "100",
            },
            "SynchronizationJobName": "MySQL Synchronization",
            "InstanceCreateTime": "2021-06-28T09:36:32Z",
            "CreateTime": "2021-06-28 17:34:53.0",
            "JobCreateTime": "2021-06-28T09:34:53Z",
            "PayType": "PostPaid",
            "Delay": "0",
            "PrecheckStatus": {
                "Status": "Finished",
                "Percent": "100",
                "Detail": [
                    {"CheckStatus": "Success", "ItemName": name} for name in SAMPLE_CHECK_ITEMS
                ],
            },
            "SynchronizationJobId": "dtsexjk1alb116lbf1",
            "DataInitialization": True,
            "DestinationEndpoint": {
                "InstanceId": "rm-bp162d4tp0500****",
                "InstanceType": "RDS",
                "EngineName": "MySQL",
            },
            "SourceEndpoint": {
                "InstanceId": "rm-bp1i99e8l7913****",
                "InstanceType": "RDS",
                "EngineName": "MySQL",
            },
            "StructureInitialization": True,
            "ExpireTime": "2021-07-07T16:00:00Z",
            "Performance": {"RPS": "0", "FLOW": "0.00MB/s"},
            "SynchronizationJobClass": "large",
            "Tags": [],
            "DataSynchronizationStatus": {},
            "StructureInitializationStatus": {
                "Status": "Finished",
                "Progress": "1",
                "Percent": "100",
            },
        }
    ],
    "PageRecordCount": 30,
    "RequestId": "92E1E99D-5224-4AD3-8C94-23A3516B****",
    "PageNumber": 1,
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


SAMPLE_JOB = JobState(
    region=REGION,
    job_id="dtsexjk1alb116lbf1",
    direction="Forward",
    job_name="MySQL Synchronization",
    status="Synchronizing",
    error_message=None,
    delay_seconds=0,
    pay_type="PostPaid",
    job_class="large",
    structure_initialization=True,
    data_initialization=True,
    precheck=Precheck(
        status="Finished",
        percent=100.0,
        items=tuple(PrecheckItem(item_name=name, status="Success") for name in SAMPLE_CHECK_ITEMS),
    ),
    structure_init=InitStage(status="Finished", percent=100.0, progress=1, error_message=None),
    data_init=InitStage(status="Finished", percent=100.0, progress=200001, error_message=None),
    source=Endpoint(instance_id="rm-bp1i99e8l7913****", instance_type="RDS", engine_name="MySQL"),
    destination=Endpoint(
        instance_id="rm-bp162d4tp0500****", instance_type="RDS", engine_name="MySQL"
    ),
    rps=0.0,
    flow_mbps=0.0,
    tags=(),
    objects=(SyncObject(schema_name="dtstestdatabase", new_schema_name="newdtstestdatabase"),),
    create_time=utc(2021, 6, 28, 9, 34, 53),
    job_create_time=utc(2021, 6, 28, 9, 34, 53),
    instance_create_time=utc(2021, 6, 28, 9, 36, 32),
    expire_time=utc(2021, 7, 7, 16, 0, 0),
)


def job(**fields: Any) -> dict[str, Any]:
    """A minimal raw job, with `fields` laid over it (a value of `...` removes the key)."""
    raw: dict[str, Any] = {
        "SynchronizationJobId": "dtsjob0001",
        "SynchronizationJobName": "orders",
        "Status": "Synchronizing",
    }
    raw.update(fields)
    return {k: v for k, v in raw.items() if v is not ...}


def parse_one(raw: Any, region: str = REGION) -> JobState:
    page = parse_page({"SynchronizationInstances": [raw]}, region)
    assert page.skipped == 0
    assert len(page.jobs) == 1
    return page.jobs[0]


def dig(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = None if obj is None else getattr(obj, name)
    return obj


# --- the reference sample ------------------------------------------------------------------


def _map_keys(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {fn(k): _map_keys(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_keys(v, fn) for v in value]
    return value


def _all_strings(value: Any) -> Any:
    """What an XML-to-JSON bridge does: every scalar becomes text."""
    if isinstance(value, dict):
        return {k: _all_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_all_strings(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _xml_style(body: dict[str, Any]) -> dict[str, Any]:
    """Lists wrapped the way the XML sample nests them, scalars as text."""
    out = _all_strings(copy.deepcopy(body))
    for instance in out["SynchronizationInstances"]:
        instance["PrecheckStatus"]["Detail"] = {"Detail": instance["PrecheckStatus"]["Detail"]}
        instance["SynchronizationObjects"] = {
            "SynchronizationObject": instance["SynchronizationObjects"]
        }
        instance["Tags"] = {"Tag": instance["Tags"]}
    out["SynchronizationInstances"] = {"SynchronizationInstance": out["SynchronizationInstances"]}
    return out


SAMPLE_VARIANTS = {
    "as-published": lambda b: b,
    "keys-lower-case": lambda b: _map_keys(b, str.lower),
    "keys-upper-case": lambda b: _map_keys(b, str.upper),
    "keys-swapped-case": lambda b: _map_keys(b, str.swapcase),
    "all-values-text": _all_strings,
    "xml-style-wrapped": _xml_style,
    "round-tripped-json": lambda b: json.loads(json.dumps(b)),
}


@pytest.mark.parametrize("variant", SAMPLE_VARIANTS.values(), ids=SAMPLE_VARIANTS.keys())
def test_reference_sample_parses_into_expected_job(
    variant: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    page = parse_page(variant(copy.deepcopy(SAMPLE)), REGION)
    assert page.request_id == "92E1E99D-5224-4AD3-8C94-23A3516B****"
    assert page.page_number == 1
    assert page.total_record_count == 100
    assert (page.raw_count, page.skipped) == (1, 0)
    assert page.jobs == (SAMPLE_JOB,)


def test_reference_sample_field_by_field() -> None:
    """The same expectation as above, spelled out so a failure names the field."""
    (state,) = parse_page(copy.deepcopy(SAMPLE), REGION).jobs
    for name in JobState.__dataclass_fields__:
        assert getattr(state, name) == getattr(SAMPLE_JOB, name), name
    assert type(state.delay_seconds) is int
    for value in (state.rps, state.flow_mbps, state.precheck.percent, state.data_init.percent):
        assert type(value) is float
    for moment in (
        state.create_time,
        state.job_create_time,
        state.instance_create_time,
        state.expire_time,
    ):
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)
    # CreateTime is Beijing time in the reference; JobCreateTime is the same instant in UTC.
    assert state.create_time == state.job_create_time
    assert state.create_time.isoformat() == "2021-06-28T09:34:53+00:00"
    assert state.key == JobKey(REGION, "dtsexjk1alb116lbf1", "Forward")
    assert state.precheck.failed_items == ()
    assert not state.structure_init.failed
    assert not state.data_init.failed


# --- statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("synchronizing", "Synchronizing"),
        ("SYNCHRONIZING", "Synchronizing"),
        ("Synchronizing", "Synchronizing"),
        ("sYnChRoNiZiNg", "Synchronizing"),
        ("  Synchronizing\n", "Synchronizing"),
        ("initializating", "Initializating"),
        ("INITIALIZATING", "Initializating"),
        ("Initializing", "Initializating"),
        ("notstarted", "NotStarted"),
        ("prechecking", "Prechecking"),
        ("precheckfailed", "PrecheckFailed"),
        ("PRECHECK_FAILED", "PrecheckFailed"),
        ("initializefailed", "InitializeFailed"),
        ("failed", "Failed"),
        ("suspending", "Suspending"),
        ("Suspended", "Suspending"),
        ("modifying", "Modifying"),
        ("FINISHED", "Finished"),
        ("Catching_Up", "Catching_Up"),
        ("SomethingNew", "SomethingNew"),
        ("新状态", "新状态"),
        ("", "Unknown"),
        ("   ", "Unknown"),
        (None, "Unknown"),
        (..., "Unknown"),
        ({"Status": "Failed"}, "Unknown"),
        (["Failed"], "Unknown"),
        (42, "42"),
    ],
)
def test_status_normalization(raw: Any, expected: str) -> None:
    assert parse_one(job(Status=raw)).status == expected


@pytest.mark.parametrize("status", KNOWN_STATUSES)
@pytest.mark.parametrize("spell", [str.lower, str.upper, str.swapcase, str.title, str])
def test_every_known_status_in_any_case(status: str, spell: Callable[[str], str]) -> None:
    assert normalize_status(spell(status)) == status
    assert parse_one(job(Status=spell(status))).status == status


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, "Unknown"), ("", "Unknown"), (" \t", "Unknown"), (" failed ", "Failed"), ("X", "X")],
)
def test_normalize_status_directly(raw: str | None, expected: str) -> None:
    assert normalize_status(raw) == expected


# --- keys in any letter case ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["Status", "status", "STATUS", "sTaTuS"])
def test_status_key_in_any_case(key: str) -> None:
    raw = job(Status=...)
    raw[key] = "failed"
    assert parse_one(raw).status == "Failed"


def test_all_keys_in_other_case_including_nested() -> None:
    raw = {
        "synchronizationjobid": "dtsjob0002",
        "SYNCHRONIZATIONJOBNAME": "orders",
        "status": "FAILED",
        "errormessage": "DTS-070211: Connect Source DB failed",
        "DELAY": "17",
        "sourceendpoint": {"instanceid": "rm-src", "ip": "10.0.0.1", "PORT": "3306"},
        "performance": {"rps": "12", "flow": "1.5MB/s"},
        "precheckstatus": {"STATUS": "failed", "detail": [{"itemname": "X", "checkstatus": "x"}]},
        "synchronizationdirection": "reverse",
    }
    state = parse_one(raw)
    assert (state.job_id, state.job_name, state.status) == ("dtsjob0002", "orders", "Failed")
    assert state.error_message == "DTS-070211: Connect Source DB failed"
    assert state.delay_seconds == 17
    assert state.source == Endpoint(instance_id="rm-src", ip="10.0.0.1", port=3306)
    assert (state.rps, state.flow_mbps) == (12.0, 1.5)
    assert state.precheck == Precheck(
        status="Failed", percent=None, items=(PrecheckItem("X", "x"),)
    )
    assert state.direction == "Reverse"


@pytest.mark.parametrize("exact_first", [True, False])
def test_exact_key_spelling_wins_over_other_case(exact_first: bool) -> None:
    pairs = [("Status", "Failed"), ("status", "Synchronizing")]
    raw = dict(pairs if exact_first else pairs[::-1])
    raw["SynchronizationJobId"] = "dtsjob0003"
    assert parse_one(raw).status == "Failed"


# --- scalar tolerance ----------------------------------------------------------------------

TOLERANCE = [
    # Delay: seconds as int, from strings, JSON numbers, with units, garbage, negatives.
    ("delay-str", {"Delay": "0"}, "delay_seconds", 0),
    ("delay-int", {"Delay": 42}, "delay_seconds", 42),
    ("delay-float", {"Delay": 12.9}, "delay_seconds", 12),
    ("delay-float-str", {"Delay": "12.9"}, "delay_seconds", 12),
    ("delay-padded", {"Delay": "  7 "}, "delay_seconds", 7),
    ("delay-unit", {"Delay": "7s"}, "delay_seconds", 7),
    ("delay-exp", {"Delay": "1e3"}, "delay_seconds", 1000),
    ("delay-empty", {"Delay": ""}, "delay_seconds", None),
    ("delay-na", {"Delay": "N/A"}, "delay_seconds", None),
    ("delay-null", {"Delay": None}, "delay_seconds", None),
    ("delay-missing", {}, "delay_seconds", None),
    ("delay-negative-str", {"Delay": "-1"}, "delay_seconds", None),
    ("delay-negative-int", {"Delay": -5}, "delay_seconds", None),
    ("delay-object", {"Delay": {"Value": 3}}, "delay_seconds", None),
    ("delay-list", {"Delay": [3]}, "delay_seconds", None),
    ("delay-bool", {"Delay": True}, "delay_seconds", None),
    ("delay-overflow-str", {"Delay": "1e400"}, "delay_seconds", None),
    # The deprecated DataSynchronizationStatus.Delay is a fallback only.
    ("delay-fallback", {"DataSynchronizationStatus": {"Delay": "9"}}, "delay_seconds", 9),
    (
        "delay-top-level-wins",
        {"Delay": "3", "DataSynchronizationStatus": {"Delay": "9"}},
        "delay_seconds",
        3,
    ),
    (
        "delay-fallback-negative",
        {"DataSynchronizationStatus": {"Delay": -2}},
        "delay_seconds",
        None,
    ),
    # Booleans.
    ("bool-true-str", {"DataInitialization": "true"}, "data_initialization", True),
    ("bool-TRUE-str", {"DataInitialization": "TRUE"}, "data_initialization", True),
    ("bool-true", {"DataInitialization": True}, "data_initialization", True),
    ("bool-false-str", {"DataInitialization": "false"}, "data_initialization", False),
    ("bool-false", {"DataInitialization": False}, "data_initialization", False),
    ("bool-1-str", {"DataInitialization": "1"}, "data_initialization", True),
    ("bool-0-str", {"DataInitialization": "0"}, "data_initialization", False),
    ("bool-1", {"DataInitialization": 1}, "data_initialization", True),
    ("bool-0", {"DataInitialization": 0}, "data_initialization", False),
    ("bool-empty", {"DataInitialization": ""}, "data_initialization", None),
    ("bool-garbage", {"DataInitialization": "maybe"}, "data_initialization", None),
    ("bool-object", {"DataInitialization": {}}, "data_initialization", None),
    ("bool-list", {"DataInitialization": [True]}, "data_initialization", None),
    ("bool-missing", {}, "data_initialization", None),
    ("struct-bool-str", {"StructureInitialization": "False"}, "structure_initialization", False),
    # Performance: FLOW carries a unit.
    ("flow-unit", {"Performance": {"FLOW": "0.00MB/s"}}, "flow_mbps", 0.0),
    ("flow-unit-nonzero", {"Performance": {"FLOW": "1.25MB/s"}}, "flow_mbps", 1.25),
    ("flow-str", {"Performance": {"FLOW": "3"}}, "flow_mbps", 3.0),
    ("flow-number", {"Performance": {"FLOW": 2}}, "flow_mbps", 2.0),
    ("flow-empty", {"Performance": {"FLOW": ""}}, "flow_mbps", None),
    ("flow-unit-only", {"Performance": {"FLOW": "MB/s"}}, "flow_mbps", None),
    ("flow-object", {"Performance": {"FLOW": {"v": 1}}}, "flow_mbps", None),
    ("rps-str", {"Performance": {"RPS": "100"}}, "rps", 100.0),
    ("rps-number", {"Performance": {"RPS": 100}}, "rps", 100.0),
    ("rps-missing", {"Performance": {}}, "rps", None),
    # Percents.
    ("percent-sign", {"PrecheckStatus": {"Percent": "100%"}}, "precheck.percent", 100.0),
    ("percent-str", {"PrecheckStatus": {"Percent": "55.5"}}, "precheck.percent", 55.5),
    ("percent-number", {"PrecheckStatus": {"Percent": 55.5}}, "precheck.percent", 55.5),
    ("percent-empty", {"PrecheckStatus": {"Percent": ""}}, "precheck.percent", None),
    ("percent-garbage", {"PrecheckStatus": {"Percent": "abc"}}, "precheck.percent", None),
    (
        "stage-percent-sign",
        {"StructureInitializationStatus": {"Status": "Migrating", "Percent": "42%"}},
        "structure_init.percent",
        42.0,
    ),
    # Progress and ports: ints.
    (
        "progress-str",
        {"DataInitializationStatus": {"Status": "Migrating", "Progress": "200001"}},
        "data_init.progress",
        200001,
    ),
    (
        "progress-number",
        {"DataInitializationStatus": {"Status": "Migrating", "Progress": 200001}},
        "data_init.progress",
        200001,
    ),
    (
        "progress-empty",
        {"DataInitializationStatus": {"Status": "Migrating", "Progress": ""}},
        "data_init.progress",
        None,
    ),
    (
        "progress-garbage",
        {"DataInitializationStatus": {"Status": "Migrating", "Progress": [1]}},
        "data_init.progress",
        None,
    ),
    ("port-str", {"SourceEndpoint": {"Port": "3306"}}, "source.port", 3306),
    ("port-number", {"SourceEndpoint": {"Port": 3306}}, "source.port", 3306),
    ("port-empty", {"SourceEndpoint": {"Port": ""}}, "source.port", None),
    ("port-garbage", {"SourceEndpoint": {"Port": "mysql"}}, "source.port", None),
    # Strings.
    ("str-number", {"PayType": 123}, "pay_type", "123"),
    ("str-bool", {"PayType": True}, "pay_type", "true"),
    ("str-object", {"PayType": {"v": "PrePaid"}}, "pay_type", None),
    ("str-list", {"PayType": ["PrePaid"]}, "pay_type", None),
    ("str-empty", {"ErrorMessage": ""}, "error_message", None),
    ("str-blank", {"ErrorMessage": "  \n"}, "error_message", None),
    ("str-kept", {"ErrorMessage": "DTS-1020042 boom"}, "error_message", "DTS-1020042 boom"),
    ("name-object", {"SynchronizationJobName": {"v": 1}}, "job_name", ""),
    ("name-missing", {"SynchronizationJobName": ...}, "job_name", ""),
    ("name-number", {"SynchronizationJobName": 7}, "job_name", "7"),
    ("id-number", {"SynchronizationJobId": 12345}, "job_id", "12345"),
    ("id-padded", {"SynchronizationJobId": "  dtsjob9 "}, "job_id", "dtsjob9"),
    # Times: aware UTC; naive text is Beijing time; epoch seconds and milliseconds.
    ("time-z", {"ExpireTime": "2021-07-07T16:00:00Z"}, "expire_time", utc(2021, 7, 7, 16)),
    (
        "time-offset",
        {"ExpireTime": "2021-07-08T00:00:00+08:00"},
        "expire_time",
        utc(2021, 7, 7, 16),
    ),
    (
        "time-beijing",
        {"CreateTime": "2021-06-28 17:34:53.0"},
        "create_time",
        utc(2021, 6, 28, 9, 34, 53),
    ),
    (
        "time-beijing-no-fraction",
        {"CreateTime": "2021-06-28 17:34:53"},
        "create_time",
        utc(2021, 6, 28, 9, 34, 53),
    ),
    ("time-epoch-s", {"ExpireTime": 1625673600}, "expire_time", utc(2021, 7, 7, 16)),
    ("time-epoch-ms", {"ExpireTime": 1625673600000}, "expire_time", utc(2021, 7, 7, 16)),
    ("time-empty", {"ExpireTime": ""}, "expire_time", None),
    ("time-garbage", {"ExpireTime": "next tuesday"}, "expire_time", None),
    ("time-object", {"ExpireTime": {"t": 1}}, "expire_time", None),
    ("time-missing", {}, "expire_time", None),
    # Direction.
    ("direction-missing", {}, "direction", "Forward"),
    ("direction-empty", {"SynchronizationDirection": ""}, "direction", "Forward"),
    ("direction-lower", {"SynchronizationDirection": "reverse"}, "direction", "Reverse"),
    ("direction-upper", {"SynchronizationDirection": "FORWARD"}, "direction", "Forward"),
    ("direction-unknown", {"SynchronizationDirection": "Sideways"}, "direction", "Sideways"),
]


@pytest.mark.parametrize(
    ("fields", "path", "expected"),
    [pytest.param(f, p, e, id=i) for i, f, p, e in TOLERANCE],
)
def test_field_tolerance(fields: dict[str, Any], path: str, expected: Any) -> None:
    value = dig(parse_one(job(**fields)), path)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(value, datetime):
        assert value.utcoffset() == timedelta(0)


# --- missing, malformed and extra structure ------------------------------------------------


def test_missing_objects_are_none() -> None:
    state = parse_one({"SynchronizationJobId": "dtsjob0004"})
    assert state == JobState(
        region=REGION, job_id="dtsjob0004", direction="Forward", job_name="", status="Unknown"
    )
    for name in ("precheck", "structure_init", "data_init", "source", "destination"):
        assert getattr(state, name) is None
    assert (state.rps, state.flow_mbps, state.expire_time) == (None, None, None)
    assert (state.tags, state.objects) == ((), ())


@pytest.mark.parametrize(
    ("key", "attribute"),
    [
        ("PrecheckStatus", "precheck"),
        ("Performance", "rps"),
        ("Performance", "flow_mbps"),
        ("ExpireTime", "expire_time"),
        ("SourceEndpoint", "source"),
        ("DestinationEndpoint", "destination"),
        ("StructureInitializationStatus", "structure_init"),
        ("DataInitializationStatus", "data_init"),
    ],
)
def test_each_missing_object_is_none(key: str, attribute: str) -> None:
    present = parse_one(job(**{key: SAMPLE["SynchronizationInstances"][0][key]}))
    assert getattr(present, attribute) == getattr(SAMPLE_JOB, attribute) is not None
    assert getattr(parse_one(job()), attribute) is None


def test_empty_objects() -> None:
    state = parse_one(
        job(
            PrecheckStatus={},
            Performance={},
            SourceEndpoint={},
            StructureInitializationStatus={},
            DataInitializationStatus={"Progress": "5"},  # no status, no percent: no stage
            DataSynchronizationStatus={},
        )
    )
    assert state.precheck == Precheck(status=None, percent=None, items=())
    assert (state.rps, state.flow_mbps) == (None, None)
    assert state.source == Endpoint()
    assert state.structure_init is None
    assert state.data_init is None
    assert state.delay_seconds is None


@pytest.mark.parametrize(
    ("key", "garbage", "path"),
    [
        ("SourceEndpoint", [{"InstanceId": "rm-1"}], "source"),
        ("DestinationEndpoint", "rm-1", "destination"),
        ("PrecheckStatus", [{"Status": "Failed"}], "precheck"),
        ("PrecheckStatus", "Failed", "precheck"),
        ("Performance", "fast", "rps"),
        ("Performance", [{"RPS": "1"}], "flow_mbps"),
        ("DataInitializationStatus", "Finished", "data_init"),
        ("StructureInitializationStatus", [{"Status": "Failed"}], "structure_init"),
        ("DataSynchronizationStatus", ["x"], "delay_seconds"),
        ("Tags", "env=prod", "tags"),
        ("Tags", 5, "tags"),
        ("SynchronizationObjects", "db1", "objects"),
    ],
)
def test_wrong_shapes_become_none_or_empty(key: str, garbage: Any, path: str) -> None:
    state = parse_one(job(**{key: garbage}))
    assert dig(state, path) in (None, ())
    assert state.status == "Synchronizing"  # one odd field does not hide the status


def test_unknown_extra_fields_are_ignored() -> None:
    plain = copy.deepcopy(SAMPLE["SynchronizationInstances"][0])
    extra = copy.deepcopy(plain)
    extra["SomethingAddedIn2030"] = {"Nested": [1, 2, {"x": None}]}
    extra["ReservedConfig"] = '{"a": 1}'
    extra["PrecheckStatus"]["Detail"][0]["NewColumn"] = "x"
    extra["SourceEndpoint"]["DatabaseName"] = "db"
    extra["Performance"]["Latency"] = "1ms"
    assert parse_one(extra) == parse_one(plain) == SAMPLE_JOB


# --- wrapped lists -------------------------------------------------------------------------

ITEM_A = {"CheckStatus": "Success", "ItemName": "CHECK_CONN_SRC"}
ITEM_B = {
    "CheckStatus": "FAILED",
    "ItemName": "CHECK_AUTH_DEST",
    "ErrorMessage": "Access denied for user 'dtstest'",
    "RepairMethod": "CHECK_ERROR_DEST_CONN_REPAIR2",
}
PRECHECK_A = PrecheckItem(item_name="CHECK_CONN_SRC", status="Success")
PRECHECK_B = PrecheckItem(
    item_name="CHECK_AUTH_DEST",
    status="Failed",
    error_message="Access denied for user 'dtstest'",
    repair_method="CHECK_ERROR_DEST_CONN_REPAIR2",
)


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        pytest.param([ITEM_A, ITEM_B], (PRECHECK_A, PRECHECK_B), id="bare-list"),
        pytest.param({"Detail": [ITEM_A, ITEM_B]}, (PRECHECK_A, PRECHECK_B), id="xml-wrapped"),
        pytest.param({"CheckItem": [ITEM_A]}, (PRECHECK_A,), id="xml-wrapped-other-name"),
        pytest.param(ITEM_B, (PRECHECK_B,), id="single-object"),
        pytest.param({"Detail": ITEM_A}, (PRECHECK_A,), id="wrapped-single-object"),
        pytest.param({"ItemName": "CHECK_X"}, (PrecheckItem("CHECK_X", "Unknown"),), id="one-key"),
        pytest.param([ITEM_A, "junk", 3, None, [ITEM_B], True], (PRECHECK_A,), id="junk-entries"),
        pytest.param([], (), id="empty-list"),
        pytest.param({}, (), id="empty-object"),
        pytest.param("", (), id="empty-string"),
        pytest.param(None, (), id="null"),
        pytest.param({"Detail": []}, (), id="wrapped-empty"),
    ],
)
def test_precheck_detail_shapes(detail: Any, expected: tuple[PrecheckItem, ...]) -> None:
    state = parse_one(job(PrecheckStatus={"Status": "failed", "Detail": detail}))
    assert state.precheck is not None
    assert state.precheck.status == "Failed"
    assert state.precheck.items == expected
    assert state.precheck.failed_items == tuple(i for i in expected if i.status == "Failed")


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param([{"Key": "env", "Value": "prod"}], (("env", "prod"),), id="bare-list"),
        pytest.param({"Tag": [{"Key": "env", "Value": "prod"}]}, (("env", "prod"),), id="wrapped"),
        pytest.param({"Key": "env", "Value": "prod"}, (("env", "prod"),), id="single-object"),
        pytest.param({"Tag": {"Key": "env", "Value": "prod"}}, (("env", "prod"),), id="wrap-one"),
        pytest.param([{"Key": "env"}], (("env", ""),), id="no-value"),
        pytest.param([{"Key": "env", "Value": ""}], (("env", ""),), id="empty-value"),
        pytest.param([{"Value": "orphan"}, {"Key": ""}], (), id="no-key"),
        pytest.param(
            [{"Key": "z", "Value": "1"}, {"key": "a", "VALUE": "2"}],
            (("a", "2"), ("z", "1")),
            id="sorted-any-case",
        ),
    ],
)
def test_tag_shapes(tags: Any, expected: tuple[tuple[str, str], ...]) -> None:
    assert parse_one(job(Tags=tags)).tags == expected


def test_synchronization_objects_wrapped_xml_style() -> None:
    objects = {
        "SynchronizationObject": [
            {
                "SchemaName": "db1",
                "NewSchemaName": "db1_copy",
                "TableIncludes": {"TableInclude": [{"TableName": "t1"}, {"TableName": "t2"}]},
                "TableExcludes": {"TableName": "audit"},
            },
            {"SchemaName": "db2", "TableIncludes": [{"TableName": ""}, {"TableName": "t3"}]},
        ]
    }
    assert parse_one(job(SynchronizationObjects=objects)).objects == (
        SyncObject("db1", "db1_copy", ("t1", "t2"), ("audit",)),
        SyncObject("db2", None, ("t3",), ()),
    )


@pytest.mark.parametrize(
    ("instances", "expected_ids"),
    [
        pytest.param([job(SynchronizationJobId="a")], ["a"], id="bare-list"),
        pytest.param(
            {
                "SynchronizationInstance": [
                    job(SynchronizationJobId="a"),
                    job(SynchronizationJobId="b"),
                ]
            },
            ["a", "b"],
            id="xml-wrapped",
        ),
        pytest.param(job(SynchronizationJobId="a"), ["a"], id="single-object"),
        pytest.param(
            {"SynchronizationInstance": job(SynchronizationJobId="a")}, ["a"], id="wrapped-single"
        ),
        pytest.param({"SynchronizationJobId": "a"}, ["a"], id="single-object-one-key"),
        pytest.param([], [], id="empty"),
        pytest.param(None, [], id="null"),
        pytest.param("", [], id="empty-string"),
        pytest.param(..., [], id="missing"),
    ],
)
def test_instance_list_shapes(instances: Any, expected_ids: list[str]) -> None:
    body: dict[str, Any] = {"RequestId": "r-1"}
    if instances is not ...:
        body["SynchronizationInstances"] = instances
    page = parse_page(body, REGION)
    assert [j.job_id for j in page.jobs] == expected_ids
    assert page.skipped == 0
    assert page.request_id == "r-1"


# --- jobs we cannot use, and the page around them -------------------------------------------


def test_jobs_without_id_are_skipped_and_counted() -> None:
    instances = [
        job(SynchronizationJobId=...),
        job(SynchronizationJobId=""),
        job(SynchronizationJobId="   "),
        job(SynchronizationJobId=None),
        job(SynchronizationJobId={"Id": "x"}),
        job(SynchronizationJobId=["dtsjob"]),
        "not a job",
        42,
        None,
        [job()],
        job(SynchronizationJobId="dtsjob-good"),
    ]
    page = parse_page({"SynchronizationInstances": instances, "TotalRecordCount": 11}, REGION)
    assert [j.job_id for j in page.jobs] == ["dtsjob-good"]
    assert page.raw_count == 11
    assert page.skipped == 10
    assert page.total_record_count == 11


@pytest.mark.parametrize("body", [[], "text", None, 3, {"RequestId": {"x": 1}}, {"x": [1, {}]}])
def test_page_of_nothing_useful(body: Any) -> None:
    page = parse_page(body, REGION)
    assert (page.jobs, page.raw_count, page.skipped) == ((), 0, 0)
    assert page.request_id is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"PageNumber": "2", "TotalRecordCount": "61", "RequestId": "r"}, (2, 61, "r")),
        ({"pagenumber": 2, "TOTALRECORDCOUNT": 61.0, "requestid": "r"}, (2, 61, "r")),
        ({"PageNumber": "", "TotalRecordCount": "lots", "RequestId": 7}, (None, None, "7")),
    ],
)
def test_page_fields(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    page = parse_page(body, REGION)
    assert (page.page_number, page.total_record_count, page.request_id) == expected


def test_two_way_job_gives_two_distinct_keys() -> None:
    forward = job(
        SynchronizationJobId="dtsbidir01",
        SynchronizationDirection="Forward",
        Status="Synchronizing",
        Delay="1",
    )
    reverse = job(
        SynchronizationJobId="dtsbidir01",
        SynchronizationDirection="reverse",
        Status="failed",
        Delay="900",
    )
    page = parse_page({"SynchronizationInstances": [forward, reverse]}, REGION)
    assert len(page.jobs) == 2
    keys = {j.key for j in page.jobs}
    assert keys == {
        JobKey(REGION, "dtsbidir01", "Forward"),
        JobKey(REGION, "dtsbidir01", "Reverse"),
    }
    snapshot = Snapshot.of(page.jobs)
    assert len(snapshot) == 2
    assert snapshot.jobs[JobKey(REGION, "dtsbidir01", "Reverse")].status == "Failed"
    assert snapshot.jobs[JobKey(REGION, "dtsbidir01", "Reverse")].delay_seconds == 900
    assert snapshot.jobs[JobKey(REGION, "dtsbidir01", "Forward")].delay_seconds == 1


def test_same_job_id_in_two_regions_is_two_jobs() -> None:
    raw = job(SynchronizationJobId="dtsjob0005")
    a = parse_one(raw, "cn-hangzhou")
    b = parse_one(raw, "cn-shanghai")
    assert a.key != b.key
    assert len(Snapshot.of([a, b])) == 2


@pytest.mark.parametrize(
    ("stage_status", "failed"),
    [("failed", True), ("FAILED", True), ("Finished", False), ("migrating", False), (None, False)],
)
def test_init_stage_failure(stage_status: str | None, failed: bool) -> None:
    raw = job(
        StructureInitializationStatus={
            "Status": stage_status,
            "Percent": "10",
            "ErrorMessage": 'DTS-1020042 Execute sql error sql: ERROR: type "geometry"',
        }
    )
    stage = parse_one(raw).structure_init
    assert stage is not None
    assert stage.failed is failed
    assert stage.error_message == 'DTS-1020042 Execute sql error sql: ERROR: type "geometry"'


def test_response_models_take_any_key_case_directly() -> None:
    """Each response model on its own: the alias table is per class, not shared."""
    assert Tag.model_validate({"KEY": "k", "value": "v"}) == Tag(key="k", value="v")
    assert TableName.model_validate({"tablename": "t"}).table_name == "t"
    assert CheckItem.model_validate({"ITEMNAME": "X"}).item_name == "X"
    assert EndpointModel.model_validate({"Ip": "1.2.3.4"}).ip == "1.2.3.4"
    assert Performance.model_validate({"flow": "2MB/s"}).flow == 2.0
    assert InitializationStatus.model_validate({"percent": "5%"}).percent == 5.0
    assert DataSynchronizationStatus.model_validate({"DELAY": "4"}).delay == 4
    assert PrecheckStatus.model_validate({"detail": ITEM_A}).detail[0].item_name == "CHECK_CONN_SRC"
    assert SynchronizationObject.model_validate({"schemaname": "db"}).schema_name == "db"
    assert SynchronizationInstance.model_validate({"status": "x"}).status == "x"
    response = DescribeSynchronizationJobsResponse.model_validate({"requestid": "r"})
    assert response.request_id == "r"
    # Nothing of this shape leaks between classes: Status is not a Tag field.
    assert Tag.model_validate({"Status": "x"}) == Tag()


# --- to_dict / from_dict -------------------------------------------------------------------

FULL_JOB = JobState(
    region="cn-shanghai",
    job_id="dtsfull0001",
    direction="Reverse",
    job_name="订单 sync/1 🚀",
    status="PrecheckFailed",
    error_message="DTS-070211: Connect Source DB failed",
    delay_seconds=321,
    pay_type="PrePaid",
    job_class="large",
    structure_initialization=True,
    data_initialization=False,
    precheck=Precheck(status="Failed", percent=87.5, items=(PRECHECK_A, PRECHECK_B)),
    structure_init=InitStage(status="Failed", percent=12.5, progress=3, error_message="boom"),
    data_init=InitStage(status="NotStarted", percent=0.0, progress=0),
    source=Endpoint("rm-src", "RDS", "MySQL", "172.16.88.1", 3306, "dtstest"),
    destination=Endpoint("pgm-dst", "PolarDB", "PostgreSQL", None, 5432, None),
    rps=1234.5,
    flow_mbps=0.25,
    tags=(("env", "prod"), ("z", "last"), ("团队", "")),  # sorted, as parsing leaves them
    objects=(
        SyncObject("db1", "db1_copy", ("t1", "t2"), ("audit",)),
        SyncObject(None, None, (), ()),
    ),
    create_time=utc(2021, 6, 28, 9, 34, 53),
    job_create_time=datetime(2021, 6, 28, 9, 34, 53, 123456, tzinfo=UTC),
    instance_create_time=utc(2021, 6, 28, 9, 36, 32),
    expire_time=utc(2021, 7, 7, 16, 0, 0),
)
MINIMAL_JOB = JobState(
    region="cn-hangzhou", job_id="dtsmin0001", direction="Forward", job_name="", status="Unknown"
)


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(SAMPLE_JOB, id="reference-sample"),
        pytest.param(FULL_JOB, id="every-field"),
        pytest.param(MINIMAL_JOB, id="minimal"),
        pytest.param(parse_one(job(Tags=[{"Key": "b"}, {"Key": "a", "Value": "1"}])), id="tags"),
    ],
)
def test_to_dict_from_dict_round_trip(state: JobState) -> None:
    data = state.to_dict()
    assert JobState.from_dict(data) == state
    # ... and through JSON, the way the store keeps it.
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    assert JobState.from_dict(json.loads(text)) == state
    again = JobState.from_dict(json.loads(text))
    for name in ("precheck", "structure_init", "data_init", "source", "destination"):
        assert type(getattr(again, name)) is type(getattr(state, name))
    assert isinstance(again.tags, tuple)
    assert all(isinstance(o, SyncObject) for o in again.objects)
    assert all(isinstance(o.table_includes, tuple) for o in again.objects)


def test_from_dict_sorts_tags_whatever_order_they_were_stored_in() -> None:
    data = FULL_JOB.to_dict()
    data["tags"] = dict(reversed(list(data["tags"].items())))
    assert list(data["tags"]) == ["团队", "z", "env"]
    assert JobState.from_dict(data) == FULL_JOB


def test_to_dict_shape() -> None:
    data = FULL_JOB.to_dict()
    assert set(data) == set(JobState.__dataclass_fields__)
    assert data["tags"] == {"env": "prod", "团队": "", "z": "last"}
    assert data["create_time"] == "2021-06-28T09:34:53Z"
    assert data["job_create_time"] == "2021-06-28T09:34:53.123456Z"
    assert data["precheck"]["items"][1] == {
        "item_name": "CHECK_AUTH_DEST",
        "status": "Failed",
        "error_message": "Access denied for user 'dtstest'",
        "repair_method": "CHECK_ERROR_DEST_CONN_REPAIR2",
    }
    assert data["source"]["port"] == 3306
    assert MINIMAL_JOB.to_dict()["expire_time"] is None
    assert MINIMAL_JOB.to_dict()["precheck"] is None


TEXT = st.text(max_size=12)
OPT_TEXT = st.none() | TEXT
OPT_FLOAT = st.none() | st.floats(allow_nan=False, allow_infinity=False)
OPT_INT = st.none() | st.integers(min_value=0, max_value=10**12)
OPT_TIME = st.none() | st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
JOB_STATES = st.builds(
    JobState,
    region=TEXT,
    job_id=TEXT.filter(bool),
    direction=st.sampled_from(["Forward", "Reverse"]),
    job_name=TEXT,
    status=st.sampled_from(KNOWN_STATUSES) | TEXT,
    error_message=OPT_TEXT,
    delay_seconds=OPT_INT,
    pay_type=OPT_TEXT,
    job_class=OPT_TEXT,
    structure_initialization=st.none() | st.booleans(),
    data_initialization=st.none() | st.booleans(),
    precheck=st.none()
    | st.builds(
        Precheck,
        status=OPT_TEXT,
        percent=OPT_FLOAT,
        items=st.lists(st.builds(PrecheckItem, TEXT, TEXT, OPT_TEXT, OPT_TEXT), max_size=3).map(
            tuple
        ),
    ),
    structure_init=st.none() | st.builds(InitStage, OPT_TEXT, OPT_FLOAT, OPT_INT, OPT_TEXT),
    data_init=st.none() | st.builds(InitStage, OPT_TEXT, OPT_FLOAT, OPT_INT, OPT_TEXT),
    source=st.none() | st.builds(Endpoint, OPT_TEXT, OPT_TEXT, OPT_TEXT, OPT_TEXT, OPT_INT),
    destination=st.none() | st.builds(Endpoint, OPT_TEXT, OPT_TEXT, OPT_TEXT, OPT_TEXT, OPT_INT),
    rps=OPT_FLOAT,
    flow_mbps=OPT_FLOAT,
    # Tag keys are unique per resource; the normalized form is sorted.
    tags=st.dictionaries(TEXT, TEXT, max_size=4).map(lambda d: tuple(sorted(d.items()))),
    objects=st.lists(
        st.builds(
            SyncObject,
            OPT_TEXT,
            OPT_TEXT,
            st.lists(TEXT, max_size=3).map(tuple),
            st.lists(TEXT, max_size=3).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
    create_time=OPT_TIME,
    job_create_time=OPT_TIME,
    instance_create_time=OPT_TIME,
    expire_time=OPT_TIME,
)


@settings(max_examples=150, deadline=None)
@given(state=JOB_STATES)
def test_property_round_trip(state: JobState) -> None:
    assert JobState.from_dict(state.to_dict()) == state
    assert JobState.from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False))) == state


# --- snapshot basics -----------------------------------------------------------------------


def test_job_key_text_round_trip() -> None:
    key = JobKey("cn-hangzhou", "dtsexjk1alb116lbf1", "Reverse")
    assert str(key) == "cn-hangzhou/dtsexjk1alb116lbf1/Reverse"
    assert JobKey.decode(key.encode()) == key


_KEY_TEXT = st.text(alphabet=st.sampled_from([*"aZ9-_ ./:", '"', "\\", "\x7f", "\x1f", "é"]))


@given(_KEY_TEXT, _KEY_TEXT, _KEY_TEXT, _KEY_TEXT)
@example("cn-hangzhou", "dts1", "Forward", "default")
@example("a\\b", 'x"y', "\x7f", "é")
def test_job_key_text_is_json_dumps_of_its_parts_whatever_they_hold(
    region: str, job_id: str, direction: str, account: str
) -> None:
    # The store's row keys and event ids depend on this text: the quick way of writing
    # it must give exactly what json.dumps always gave.
    key = JobKey(region, job_id, direction, account)
    assert key.encode() == json.dumps([account, region, job_id, direction])
    assert JobKey.decode(key.encode()) == key


def test_snapshot_completeness() -> None:
    ok = RegionOutcome("cn-hangzhou", pages=2, requests=2)
    bad = RegionOutcome("cn-shanghai", error="Throttling.User: slow down", error_code="Throttling")
    assert not Snapshot.of([]).complete  # no region read: nothing proven
    assert Snapshot.of([SAMPLE_JOB], [ok]).complete
    mixed = Snapshot.of([SAMPLE_JOB], [ok, bad])
    assert not mixed.complete
    assert mixed.complete_regions == {"cn-hangzhou"}
    assert mixed.incomplete_reasons == {"cn-shanghai": "Throttling.User: slow down"}
    as_dict = mixed.to_dict()
    assert as_dict["complete"] is False
    assert as_dict["jobs"] == [SAMPLE_JOB.to_dict()]


# --- parse_page never raises ---------------------------------------------------------------

PAGE_KEYS = [info.alias for info in DescribeSynchronizationJobsResponse.model_fields.values()]
NESTED_MODELS = (
    Tag,
    TableName,
    SynchronizationObject,
    InitializationStatus,
    DataSynchronizationStatus,
    EndpointModel,
    Performance,
    CheckItem,
    PrecheckStatus,
)
REAL_KEYS = sorted(
    {
        info.alias
        for m in (SynchronizationInstance, *NESTED_MODELS)
        for info in m.model_fields.values()
    }
    | {*PAGE_KEYS, "Detail", "Tag", "SynchronizationInstance"}
)
KEYS = (
    st.sampled_from(REAL_KEYS)
    | st.sampled_from(REAL_KEYS).map(str.lower)
    | st.sampled_from(REAL_KEYS).map(str.upper)
    | st.text(max_size=8)
)
INTERESTING_TEXT = st.sampled_from(
    [
        "",
        " ",
        "N/A",
        "null",
        "100%",
        "0.00MB/s",
        "1e400",
        "-1",
        "1e3",
        "true",
        "FALSE",
        "synchronizing",
        "reverse",
        "2021-06-28 17:34:53.0",
        "2021-06-28T09:34:53Z",
        "2021-06-28T09:34:53+08:00",
        "dtsexjk1alb116lbf1",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64),  # huge ones: see the xfail below
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
    INTERESTING_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)
SMALL_JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=6,
)
MISSING = object()


def _shaped(model: type[Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Dicts with a model's real key names (any case, any may be missing), plus noise.

    Each field gets values of roughly its kind: scalars for scalar fields, objects (or
    garbage) for object fields, and lists in every wrapping for list fields.
    """
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for info in model.model_fields.values():
        annotation = str(info.annotation)
        inner = next((m for m in NESTED_MODELS if m.__name__ in annotation), None)
        if inner is None or depth > 1:
            value: st.SearchStrategy[Any] = SCALARS | INTERESTING_TEXT | SMALL_JSON
        elif "list" in annotation:
            item = _shaped(inner, depth + 1)
            value = st.one_of(
                st.lists(item, max_size=2),
                st.dictionaries(KEYS, st.lists(item, max_size=2), min_size=1, max_size=1),
                item,
                st.lists(item | SCALARS, max_size=2),
                SMALL_JSON,
            )
        else:
            value = _shaped(inner, depth + 1) | SMALL_JSON
        name = st.sampled_from([info.alias, info.alias, info.alias.lower(), info.alias.upper()])
        fields[info.alias] = st.tuples(name, st.just(MISSING) | value)
    extra = st.dictionaries(st.text(max_size=8), SMALL_JSON, max_size=1)
    return st.builds(
        lambda pairs, noise: {
            **noise,
            **{k: v for k, v in pairs.values() if v is not MISSING},
        },
        st.fixed_dictionaries(fields),
        extra,
    )


GOOD_IDS = st.text(string.ascii_letters + string.digits, min_size=1, max_size=12)
INSTANCES = st.builds(
    lambda job, job_id: {**job, "SynchronizationJobId": job_id} if job_id is not MISSING else job,
    _shaped(SynchronizationInstance),
    st.one_of(GOOD_IDS, GOOD_IDS, GOOD_IDS, st.just(MISSING), SCALARS),  # repeats weigh more
)
JOB_LISTS = st.lists(INSTANCES, min_size=1, max_size=3)
INSTANCE_LISTS = st.one_of(
    JOB_LISTS,
    JOB_LISTS,
    JOB_LISTS,
    st.lists(INSTANCES | JSON_VALUES, max_size=4),
    INSTANCES,
    st.dictionaries(KEYS, JOB_LISTS, min_size=1, max_size=1),
    JSON_VALUES,
)
SHAPED_BODIES = st.fixed_dictionaries(
    {"SynchronizationInstances": INSTANCE_LISTS},
    optional={k: SCALARS | JSON_VALUES for k in PAGE_KEYS if k != "SynchronizationInstances"},
)


def _check_page(body: Any, region: str) -> None:
    page = parse_page(body, region)
    assert len(page.jobs) + page.skipped == page.raw_count
    for state in page.jobs:
        assert state.job_id
        assert state.job_id == state.job_id.strip()
        assert state.region == region
        assert state.status
        assert state.direction
        assert state.delay_seconds is None or state.delay_seconds >= 0
        for moment in (state.create_time, state.expire_time, state.job_create_time):
            assert moment is None or moment.utcoffset() == timedelta(0)
        assert JobState.from_dict(state.to_dict()) == state or _has_duplicate_tag(state)


def _has_duplicate_tag(state: JobState) -> bool:  # a known bug, see the xfail below
    return len({k for k, _ in state.tags}) != len(state.tags)


@settings(max_examples=100, deadline=None)  # each body is big; 100 keeps this near 3 s
@given(body=SHAPED_BODIES, region=st.sampled_from(["cn-hangzhou", "ap-southeast-1"]))
def test_property_parse_page_never_raises_on_shaped_bodies(body: Any, region: str) -> None:
    _check_page(body, region)


@settings(max_examples=200, deadline=None)
@given(body=JSON_VALUES | st.dictionaries(KEYS, JSON_VALUES, max_size=6))
def test_property_parse_page_never_raises_on_any_json(body: Any) -> None:
    _check_page(body, "cn-hangzhou")


# --- found bugs, kept visible until fixed ---------------------------------------------------
# Python's json module (and so httpx's Response.json) accepts NaN, Infinity and integers of
# any size, so a body can carry them. loose_float drops non-finite numbers only when they come
# as text; as JSON numbers they pass through, and int()/float() on them raise.


@pytest.mark.parametrize(
    ("body_text", "path"),
    [
        pytest.param(
            '{"SynchronizationInstances": [{"SynchronizationJobId": "j", "Delay": Infinity}]}',
            "delay_seconds",
            id="delay-infinity",
        ),
        pytest.param(
            '{"SynchronizationInstances": [{"SynchronizationJobId": "j", "Delay": NaN}]}',
            "delay_seconds",
            id="delay-nan",
        ),
        pytest.param(
            '{"SynchronizationInstances": [{"SynchronizationJobId": "j",'
            ' "SourceEndpoint": {"Port": Infinity}}]}',
            "source.port",
            id="port-infinity",
        ),
        pytest.param(
            '{"SynchronizationInstances": [{"SynchronizationJobId": "j",'
            ' "DataInitializationStatus": {"Status": "Migrating", "Progress": NaN}}]}',
            "data_init.progress",
            id="progress-nan",
        ),
        pytest.param(
            '{"SynchronizationInstances": [{"SynchronizationJobId": "j",'
            ' "Performance": {"RPS": NaN}}]}',
            "rps",
            id="rps-nan",
        ),
        pytest.param(
            '{"SynchronizationInstances": [{"SynchronizationJobId": "j",'
            ' "PrecheckStatus": {"Percent": -Infinity}}]}',
            "precheck.percent",
            id="percent-infinity",
        ),
        pytest.param(
            '{"SynchronizationInstances": [{"SynchronizationJobId": "j",'
            ' "Delay": 1' + "0" * 400 + "}]}",
            "delay_seconds",
            id="delay-huge-int",
        ),
    ],
)
def test_non_finite_and_huge_numbers_become_none(body_text: str, path: str) -> None:
    page = parse_page(json.loads(body_text), REGION)
    (state,) = page.jobs
    assert dig(state, path) is None


@pytest.mark.parametrize(
    "body_text",
    [
        pytest.param(
            '{"TotalRecordCount": NaN}',
            id="total-nan",
        ),
        pytest.param(
            '{"PageNumber": Infinity}',
            id="page-number-infinity",
        ),
    ],
)
def test_non_finite_page_fields_become_none(body_text: str) -> None:
    page = parse_page(json.loads(body_text), REGION)
    assert page.total_record_count is None
    assert page.page_number is None


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"CreateTime": "0001-01-01 00:00:00"}, id="year-1-beijing"),
        pytest.param({"ExpireTime": "9999-12-31T23:59:59-01:00"}, id="year-9999-west"),
    ],
)
def test_out_of_range_times_become_none(fields: dict[str, Any]) -> None:
    state = parse_one(job(**fields))
    assert state.create_time is None
    assert state.expire_time is None


def test_duplicate_tag_keys_round_trip() -> None:
    state = parse_one(job(Tags=[{"Key": "env", "Value": "a"}, {"Key": "env", "Value": "b"}]))
    assert JobState.from_dict(state.to_dict()) == state


def test_job_key_with_slash_in_job_id_round_trips() -> None:
    state = parse_one(job(SynchronizationJobId="dts/odd/id"))
    assert JobKey.decode(state.key.encode()) == state.key
