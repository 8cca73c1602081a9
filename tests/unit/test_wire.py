"""An event as the bytes JetStream takes (`watcher.wire`): within the limit whatever it
holds, saying what was cut, the job id exact unless it alone is too big, endpoint
details left out when asked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from watcher import fastjson
from watcher.events import Event, WithJob
from watcher.snapshot import Endpoint, JobState, SyncObject
from watcher.wire import Wire, bound, rebound

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def job(job_id: str = "dtsjob", **fields: Any) -> JobState:
    return JobState("cn-hangzhou", job_id, "Forward", "name", "Synchronizing", **fields)


def discovered(state: JobState) -> Event:
    common = {"job_id": state.job_id, "job_name": state.job_name, "region": state.region,
              "direction": state.direction, "status": state.status}  # fmt: skip
    return Event("discovered", "info", NOW, WithJob(common, state), "id-1", state.region,
                 state.job_id)  # fmt: skip


def decoded(raw: bytes | None) -> dict[str, Any]:
    assert raw is not None
    document: dict[str, Any] = json.loads(raw)
    return document


def test_what_fits_is_left_alone() -> None:
    event = discovered(job())
    assert Wire().payload(event) == event.to_json()


def test_a_job_with_60000_tables_loses_its_objects_and_says_so() -> None:
    tables = tuple(f"orders_archive_{i:05}_partitioned_by_month" for i in range(60_000))
    huge = job(objects=(SyncObject("db", None, tables),))
    raw = Wire(limit=1024 * 1024 - 512).payload(discovered(huge))
    assert raw is not None and len(raw) <= 1024 * 1024 - 512
    data = decoded(raw)["data"]
    assert data["truncated"]["removed"] == ["job.objects"]
    assert data["truncated"]["original_bytes"] > 2_000_000
    assert data["job"]["job_id"] == "dtsjob" and "precheck" in data["job"]  # the rest stays


def test_long_texts_are_cut_before_the_id_and_the_id_only_when_it_alone_is_too_big() -> None:
    long_id = "x" * 5_000
    event = discovered(job(long_id, error_message="boom " * 10_000))
    data = decoded(Wire(limit=20_000).payload(event))["data"]
    assert data["job_id"] == long_id  # exact: everything else made room
    assert data["truncated"]["removed"]  # the job's heavy fields went first
    tiny = decoded(Wire(limit=4096).payload(event))  # the id alone is over the limit
    assert tiny["data"]["job_id"].endswith("…") and len(tiny["data"]["job_id"]) == 256
    assert "job_id" in tiny["data"]["truncated"]["shortened"]


def test_what_cannot_fit_is_none() -> None:
    assert bound({"data": {"k": "v" * 10_000}, "id": "x" * 600}, 300) is None
    assert rebound(b"\xff" * 5000, 1000) is None  # not JSON: nothing to trim
    assert rebound(b"[" * 100_000, 1000) is None  # too deep to decode: no crash


def test_endpoint_details_left_out_when_asked() -> None:
    source = Endpoint("rm-1", "RDS", "MySQL", "10.0.0.1", 3306, "dts_user")
    event = discovered(job(source=source))
    kept = decoded(Wire().payload(event))["data"]["job"]["source"]
    assert kept["ip"] == "10.0.0.1" and kept["user_name"] == "dts_user"
    left = decoded(Wire(endpoint_details=False).payload(event))["data"]["job"]["source"]
    assert left == {"instance_id": "rm-1", "instance_type": "RDS", "engine_name": "MySQL"}


def test_a_lone_surrogate_encodes_as_valid_utf8() -> None:
    odd = json.loads('"name \\ud800"')  # JSON can carry it, and the json module decodes it
    raw = fastjson.dumps({"job_name": odd})
    raw.decode("utf-8")  # valid UTF-8 for every consumer
    assert json.loads(raw) == {"job_name": odd}


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3000),
    lambda inner: st.lists(inner, max_size=40) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=60,
)


@settings(max_examples=150, deadline=None)
@given(
    data=st.dictionaries(st.text(max_size=10), values, max_size=8),
    job_id=st.text(max_size=300),
    limit=st.integers(min_value=1024, max_value=60_000),
)
def test_property_within_the_limit_or_none(data: dict[str, Any], job_id: str, limit: int) -> None:
    document = {"specversion": "1.0", "id": "e1", "type": "dts.job.discovered",
                "subject": job_id, "data": {**data, "job_id": job_id}}  # fmt: skip
    raw = bound(document, limit)
    if raw is None:
        return
    assert len(raw) <= limit
    out = json.loads(raw)
    assert (out["id"], out["type"], out["specversion"]) == ("e1", "dts.job.discovered", "1.0")
    if out != json.loads(fastjson.dumps(document)):
        assert out["data"]["truncated"]["limit_bytes"] == limit
    if len(fastjson.dumps(job_id)) * 8 < limit:
        assert out["data"]["job_id"] == job_id  # an id far below the limit stays exact
