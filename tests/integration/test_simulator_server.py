"""The DTS simulator as a client sees it: a real server on 127.0.0.1, real signed requests.

Requests are signed with the project's own `sign_request` and sent with httpx, so these
tests also show that what the watcher's client sends is what the simulator accepts.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from dts_sim import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    Fault,
    Simulator,
    SimulatorBindError,
    load_scenario,
    parse_scenario,
)
from tests.support.clock import Clock
from watcher.dts.signing import authorization, sign_request

pytestmark = pytest.mark.integration

UPPER_UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))


@pytest.fixture
def start(clock: Clock) -> Iterator[Callable[..., Simulator]]:
    """Start simulators (using `clock` unless told otherwise); all stopped afterwards."""
    started: list[Simulator] = []

    def _start(scenario: Any = "demo", **kwargs: Any) -> Simulator:
        kwargs.setdefault("clock", clock)
        sim = Simulator(scenario, **kwargs).start()
        started.append(sim)
        return sim

    yield _start
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # One client for the module: building one loads CA certificates, ~0.1 s each time.
    with httpx.Client(timeout=10) as c:
        yield c


@dataclass
class Api:
    """Signed calls to one simulator."""

    sim: Simulator
    client: httpx.Client
    clock: Clock

    def call(
        self,
        params: dict[str, str] | None = None,
        *,
        method: str = "GET",
        key_id: str = DEFAULT_ACCESS_KEY_ID,
        secret: str = DEFAULT_ACCESS_KEY_SECRET,
        token: str | None = None,
        now: datetime | None = None,
        nonce: str | None = None,
        action: str = "DescribeSynchronizationJobs",
        version: str = "2020-01-01",
        edit: Callable[[dict[str, str]], None] | None = None,
        resign: bool = False,
    ) -> httpx.Response:
        """One request; `edit` changes headers after signing (`resign` signs them again)."""
        params = dict(params or {})
        signed = sign_request(
            method=method,
            host=self.sim.url.removeprefix("http://"),
            scheme="http",
            action=action,
            params=params,
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token,
            now=now or self.clock.at,
            nonce=nonce or uuid.uuid4().hex,
            version=version,
        )
        headers = dict(signed.headers)
        if edit is not None:
            edit(headers)
        if resign:
            headers.pop("Authorization", None)
            headers["Authorization"] = authorization(key_id, secret, method, "/", params, headers)
        return self.client.request(method, signed.url, headers=headers)

    def page(self, region: str, page: int = 1, size: int = 30, /, **extra: str) -> dict[str, Any]:
        response = self.call(
            {"RegionId": region, "PageNum": str(page), "PageSize": str(size), **extra}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def list_all(self, region: str, size: int = 30) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.page(region, page, size)
            jobs.extend(body["SynchronizationInstances"])
            if len(jobs) >= body["TotalRecordCount"] or not body["SynchronizationInstances"]:
                return jobs
            page += 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every job in every region of the scenario, keyed "id" or "id/Reverse"."""
        out: dict[str, dict[str, Any]] = {}
        for region in self.sim.regions():
            for job in self.list_all(region):
                key = job["SynchronizationJobId"]
                if job["SynchronizationDirection"] == "Reverse":
                    key += "/Reverse"
                out[key] = {**job, "_region": region}
        return out


@pytest.fixture
def api_for(client: httpx.Client, clock: Clock) -> Callable[[Simulator], Api]:
    return lambda sim: Api(sim, client, clock)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["Code"] == code
    assert UPPER_UUID.match(body["RequestId"])
    assert body["RequestId"] == response.headers["x-acs-request-id"]
    assert body["HostId"]
    assert body["Message"]
    assert body["Recommend"] == f"https://api.aliyun.com/troubleshoot?q={code}&product=Dts"
    return body


# --------------------------------------------------------------------------------------
# Listing and pagination
# --------------------------------------------------------------------------------------


def test_pages_of_a_65_job_region(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("multipage"))
    pages = [api.page("cn-hangzhou", n) for n in (1, 2, 3, 4)]
    assert [p["PageRecordCount"] for p in pages] == [30, 30, 5, 0]
    assert [p["PageNumber"] for p in pages] == [1, 2, 3, 4]
    assert {p["TotalRecordCount"] for p in pages} == {65}
    ids = [job["SynchronizationJobId"] for p in pages for job in p["SynchronizationInstances"]]
    assert len(ids) == len(set(ids)) == 65
    assert ids[:2] == ["dtsmphz001", "dtsmphz002"]  # creation order, stable
    assert ids == [job["SynchronizationJobId"] for job in api.list_all("cn-hangzhou", size=10)]


def test_the_benchmarks_page_cache_serves_the_same_bytes(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    from benchmarks.simcache import CachedPages

    plain, cached = api_for(start("multipage")), api_for(start("multipage", pages=CachedPages()))

    def bodies(api: Api) -> list[bytes]:
        out = []
        for region in api.sim.regions():
            for page in (1, 2, 3):
                response = api.call({"RegionId": region, "PageNum": str(page)})
                assert response.status_code == 200, response.text
                request_id = response.headers["x-acs-request-id"].encode()
                out.append(response.content.replace(request_id, b"<request id>"))
        return out

    for change in range(4):
        assert bodies(cached) == bodies(plain)
        if change < 2:
            plain.sim.advance()
            cached.sim.advance()
        else:
            for sim in (plain.sim, cached.sim):
                sim.set_job("dtsmphz010", delay=change)
                sim.inject(Fault(kind="drift", action="add", region="cn-hangzhou"))


def test_other_regions_and_defaults(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("multipage"))
    beijing = [api.page("cn-beijing", n) for n in (1, 2)]
    assert [p["PageRecordCount"] for p in beijing] == [30, 1]
    assert beijing[0]["TotalRecordCount"] == 31
    empty = api.page("cn-shenzhen")
    assert empty["TotalRecordCount"] == 0
    assert empty["SynchronizationInstances"] == []
    unknown = api.page("ap-southeast-1")
    assert unknown["TotalRecordCount"] == 0
    # No PageNum / PageSize: page 1 of 30. No RegionId: cn-hangzhou.
    body = api.call({}).json()
    assert (body["PageNumber"], body["PageRecordCount"], body["TotalRecordCount"]) == (1, 30, 65)


def test_success_response_shape(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("demo"))
    response = api.call({"RegionId": "cn-hangzhou"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert UPPER_UUID.match(body["RequestId"])
    assert body["RequestId"] == response.headers["x-acs-request-id"]
    assert set(body) == {
        "TotalRecordCount",
        "PageNumber",
        "PageRecordCount",
        "RequestId",
        "SynchronizationInstances",
    }
    job = body["SynchronizationInstances"][0]
    assert job["SynchronizationJobId"] == "dtsdemo01"
    assert job["PrecheckStatus"]["Detail"][0] == {
        "CheckStatus": "Success",
        "ItemName": "CHECK_CONN_SRC",
    }


def test_post_is_accepted(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("demo"))
    response = api.call({"RegionId": "cn-shanghai"}, method="POST")
    assert response.status_code == 200
    assert response.json()["TotalRecordCount"] == 3


# --------------------------------------------------------------------------------------
# Authentication and parameter checks
# --------------------------------------------------------------------------------------


def _drop(name: str) -> Callable[[dict[str, str]], None]:
    def edit(headers: dict[str, str]) -> None:
        del headers[name]

    return edit


def _set(name: str, value: str) -> Callable[[dict[str, str]], None]:
    def edit(headers: dict[str, str]) -> None:
        headers[name] = value

    return edit


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"edit": _drop("Authorization")}, 400, "MissingParameter"),
        ({"edit": _drop("x-acs-signature-nonce")}, 400, "MissingParameter"),
        ({"edit": _drop("x-acs-date")}, 400, "MissingParameter"),
        ({"edit": _set("Authorization", "garbage")}, 400, "IncompleteSignature"),
        (
            {
                "edit": _set(
                    "Authorization", "HMAC-SHA1 Credential=a,SignedHeaders=host,Signature=b"
                )
            },
            400,
            "IncompleteSignature",
        ),
        ({"key_id": "no-such-key"}, 404, "InvalidAccessKeyId.NotFound"),
        ({"secret": "not-the-secret"}, 400, "SignatureDoesNotMatch"),
        ({"edit": _set("x-acs-date", "2025-01-02T03:04:06Z")}, 400, "SignatureDoesNotMatch"),
        ({"action": "DescribeMigrationJobs"}, 400, "InvalidAction.NotFound"),
        ({"version": "2016-08-01"}, 400, "InvalidVersion"),
    ],
    ids=[
        "no-authorization",
        "no-nonce",
        "no-date",
        "garbled",
        "other-algorithm",
        "unknown-key",
        "wrong-secret",
        "header-changed-after-signing",
        "wrong-action",
        "wrong-version",
    ],
)
def test_request_checks(
    start: Callable[..., Simulator],
    api_for: Callable[[Simulator], Api],
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    sim = start("demo")
    assert_error(api_for(sim).call({"RegionId": "cn-hangzhou"}, **kwargs), status, code)
    assert sim.requests[-1].code == code
    assert sim.requests[-1].status == status


def test_query_changed_after_signing(
    start: Callable[..., Simulator], client: httpx.Client, clock: Clock
) -> None:
    sim = start("demo")
    signed = sign_request(
        method="GET",
        host=sim.url.removeprefix("http://"),
        scheme="http",
        action="DescribeSynchronizationJobs",
        params={"RegionId": "cn-hangzhou"},
        access_key_id=DEFAULT_ACCESS_KEY_ID,
        access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
        security_token=None,
        now=clock.at,
        nonce="n-1",
    )
    tampered = signed.url.replace("cn-hangzhou", "cn-shanghai")
    body = assert_error(client.get(tampered, headers=signed.headers), 400, "SignatureDoesNotMatch")
    assert "string to sign" in body["Message"]  # as DTS, it tells what it signed


def test_unsigned_acs_header_is_incomplete(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("demo"))

    def sign_without_nonce(headers: dict[str, str]) -> None:
        auth = headers["Authorization"]
        headers["Authorization"] = auth.replace("x-acs-signature-nonce;", "")

    assert_error(api.call(edit=sign_without_nonce), 400, "IncompleteSignature")


def test_sts_credentials(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sts = {"STS.sim-key": ("sts-secret", "sts-token")}
    api = api_for(start("demo", sts_credentials=sts))
    common: dict[str, Any] = {"key_id": "STS.sim-key", "secret": "sts-secret"}
    assert_error(api.call(**common), 400, "InvalidSecurityToken.Malformed")
    assert_error(api.call(**common, token="other-token"), 400, "InvalidSecurityToken.Malformed")
    assert api.call(**common, token="sts-token").status_code == 200
    # A token sent with a plain key is a mistake too (a stale ALIBABA_CLOUD_SECURITY_TOKEN).
    assert_error(api.call(token="sts-token"), 400, "InvalidSecurityToken.Malformed")


def test_custom_credentials_replace_the_default(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("demo", credentials={"my-key": "my-secret"}))
    assert api.call(key_id="my-key", secret="my-secret").status_code == 200
    assert_error(api.call(), 404, "InvalidAccessKeyId.NotFound")


def test_nonce_is_single_use_for_fifteen_minutes(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api], clock: Clock
) -> None:
    api = api_for(start("demo"))
    assert api.call(nonce="same-nonce").status_code == 200
    assert_error(api.call(nonce="same-nonce"), 400, "SignatureNonceUsed")
    clock.at += timedelta(minutes=16)
    assert api.call(nonce="same-nonce").status_code == 200


def test_failed_requests_do_not_spend_a_nonce(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("demo"))
    assert_error(api.call(nonce="n", secret="wrong"), 400, "SignatureDoesNotMatch")
    assert api.call(nonce="n").status_code == 200


@pytest.mark.parametrize(
    ("offset_minutes", "ok"), [(-16, False), (-14, True), (14, True), (16, False)]
)
def test_timestamp_window(
    start: Callable[..., Simulator],
    api_for: Callable[[Simulator], Api],
    clock: Clock,
    offset_minutes: int,
    ok: bool,
) -> None:
    api = api_for(start("demo"))
    response = api.call(now=clock.at + timedelta(minutes=offset_minutes))
    if ok:
        assert response.status_code == 200
    else:
        assert_error(response, 400, "InvalidTimeStamp.Expired")


def test_unreadable_timestamp(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("demo"))
    response = api.call(edit=_set("x-acs-date", "yesterday"), resign=True)
    assert_error(response, 400, "InvalidTimeStamp.Format")


def test_default_clock_is_now(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    api = api_for(start("demo", clock=None))
    assert api.call(now=datetime.now(UTC)).status_code == 200
    assert_error(
        api.call(now=datetime.now(UTC) - timedelta(hours=1)), 400, "InvalidTimeStamp.Expired"
    )


@pytest.mark.parametrize(
    "params",
    [
        {"PageSize": "15"},
        {"PageSize": "50"},
        {"PageSize": "abc"},
        {"PageSize": "-10"},
        {"PageNum": "0"},
        {"PageNum": "-1"},
        {"PageNum": "one"},
        {"PageNum": "99999999999"},
        {"Tag.1.Key": ""},
        {"Tag.1.Value": "prod"},
        {"Tag.21.Key": "env"},
    ],
)
def test_invalid_parameters(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api], params: dict[str, str]
) -> None:
    api = api_for(start("demo"))
    assert_error(api.call({"RegionId": "cn-hangzhou", **params}), 400, "InvalidParameter")


@pytest.mark.parametrize("size", ["10", "20", "30"])
def test_valid_page_sizes(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api], size: str
) -> None:
    api = api_for(start("multipage"))
    body = api.call({"RegionId": "cn-hangzhou", "PageSize": size}).json()
    assert body["PageRecordCount"] == int(size)


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------


def _ids(body: dict[str, Any]) -> list[str]:
    return [
        job["SynchronizationJobId"] + ("/R" if job["SynchronizationDirection"] == "Reverse" else "")
        for job in body["SynchronizationInstances"]
    ]


def test_filters(start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]) -> None:
    api = api_for(start("demo"))
    hz, sh = "cn-hangzhou", "cn-shanghai"
    by_name = api.page(hz, SynchronizationJobName="WAREHOUSE")
    assert _ids(by_name) == ["dtsdemo01"]
    assert by_name["TotalRecordCount"] == 1
    assert _ids(api.page(hz, SynchronizationJobName=" -> ")) == [
        "dtsdemo01",
        "dtsdemo02",
        "dtsdemo03",
        "dtsdemo04",
    ]
    assert _ids(api.page(hz, **{"Tag.1.Key": "team", "Tag.1.Value": "payments"})) == [
        "dtsdemo05",
        "dtsdemo05/R",
    ]
    both = {"Tag.1.Key": "env", "Tag.1.Value": "prod", "Tag.2.Key": "team", "Tag.2.Value": "orders"}
    assert _ids(api.page(hz, **both)) == ["dtsdemo01"]
    assert _ids(api.page(sh, **{"Tag.1.Key": "retiring"})) == ["dtsdemo08"]  # key only
    assert _ids(api.page(sh, **{"Tag.1.Key": "env", "Tag.1.Value": "staging"})) == []
    assert _ids(api.page(sh, ResourceGroupId="rg-acfmdemo0legacy")) == ["dtsdemo08"]
    assert api.page(sh, ResourceGroupId="rg-other")["TotalRecordCount"] == 0


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------


def test_throttle_with_retry_after(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("demo")
    api = api_for(sim)
    sim.inject(Fault(kind="throttle", count=2, retry_after_ms=750))
    for _ in range(2):
        response = api.call()
        assert_error(response, 400, "Throttling.User")
        assert response.headers["x-acs-retry-after"] == "750"
    assert api.call().status_code == 200
    assert [r.fault for r in sim.requests] == ["throttle", "throttle", None]


def test_throttle_default_retry_after(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("demo")
    sim.inject(Fault(kind="throttle"))
    assert api_for(sim).call().headers["x-acs-retry-after"] == "200"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("unavailable", 503, "ServiceUnavailable"),
        ("internal", 500, "InternalError"),
        ("expired_token", 403, "InvalidSecurityToken.Expired"),
        ("forbidden", 403, "Forbidden.RAM"),
    ],
)
def test_error_faults(
    start: Callable[..., Simulator],
    api_for: Callable[[Simulator], Api],
    kind: str,
    status: int,
    code: str,
) -> None:
    sim = start("demo")
    api = api_for(sim)
    sim.inject({"kind": kind})
    assert_error(api.call(), status, code)
    assert api.call().status_code == 200  # count defaults to 1


def test_slow_fault_answers_normally(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("demo")
    sim.inject(Fault(kind="slow", seconds=0.05))
    response = api_for(sim).call({"RegionId": "cn-shanghai"})
    assert response.status_code == 200
    assert response.json()["TotalRecordCount"] == 3
    assert sim.requests[-1].fault == "slow"


def test_a_slow_answer_is_recorded_at_once_and_stop_cuts_it_short(
    start: Callable[..., Simulator], clock: Clock
) -> None:
    sim = start("demo")
    sim.inject(Fault(kind="slow", seconds=3600))
    with httpx.Client(timeout=1) as impatient, pytest.raises(httpx.ReadTimeout):
        Api(sim, impatient, clock).call()
    # The client gave up; its request is already on record (a test checking request
    # counts must not see it arrive later), and its handler is still waiting.
    (record,) = sim.requests
    assert (record.fault, record.code) == ("slow", "Success")
    sim.stop()  # must return although a handler is inside an hour-long fault
    assert not sim.running


@pytest.mark.parametrize("variant", ["truncated", "html", "array"])
def test_malformed_bodies(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api], variant: str
) -> None:
    sim = start("demo")
    sim.inject({"kind": "malformed", "variant": variant})
    response = api_for(sim).call()
    assert response.status_code == 200
    if variant == "html":
        assert response.headers["content-type"].startswith("text/html")
        assert response.text.startswith("<!DOCTYPE html>")
    elif variant == "array":
        assert isinstance(response.json(), list)
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.text)


def test_drift_remove_shifts_pages(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("multipage")
    api = api_for(sim)
    first = api.page("cn-hangzhou", 1)
    sim.inject(Fault(kind="drift", region="cn-hangzhou", page=2, action="remove"))
    second = api.page("cn-hangzhou", 2)
    assert second["TotalRecordCount"] == 64
    # The first job left, so what was the 32nd job now opens page 2: the 31st is never seen.
    assert _ids(first)[0] == "dtsmphz001"
    assert _ids(second)[0] == "dtsmphz032"
    assert "dtsmphz031" not in _ids(first) + _ids(second)


def test_drift_add_repeats_a_job(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("multipage")
    api = api_for(sim)
    first = api.page("cn-hangzhou", 1)
    sim.inject(Fault(kind="drift", page=2, action="add"))
    second = api.page("cn-hangzhou", 2)
    assert second["TotalRecordCount"] == 66
    assert _ids(second)[0] == _ids(first)[-1]  # pushed down a place: listed twice
    assert (
        api.page("cn-hangzhou", 1)["SynchronizationInstances"][0]["SynchronizationJobId"]
        == "dtsdrift001"
    )


def test_fault_matching_by_region_and_page(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("multipage")
    api = api_for(sim)
    sim.inject(Fault(kind="internal", region="cn-beijing", page=2, count=-1))
    assert api.call({"RegionId": "cn-hangzhou", "PageNum": "2"}).status_code == 200
    assert api.call({"RegionId": "cn-beijing", "PageNum": "1"}).status_code == 200
    for _ in range(3):  # -1: until cleared
        assert_error(api.call({"RegionId": "cn-beijing", "PageNum": "2"}), 500, "InternalError")
    assert sim.clear_faults() == 1
    assert sim.faults == []
    assert api.call({"RegionId": "cn-beijing", "PageNum": "2"}).status_code == 200


def test_faults_only_hit_authenticated_requests(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("demo")
    api = api_for(sim)
    sim.inject(Fault(kind="throttle"))
    assert_error(api.call(secret="wrong"), 400, "SignatureDoesNotMatch")
    assert_error(api.call(), 400, "Throttling.User")


def test_faults_from_a_scenario_step(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    scenario = parse_scenario(
        """
        [[jobs]]
        id = "dtsx"
        region = "cn-hangzhou"
        [[steps]]
        faults = [{ kind = "unavailable", count = 2 }]
        """
    )
    sim = start(scenario)
    api = api_for(sim)
    assert api.call().status_code == 200
    sim.advance()
    assert_error(api.call(), 503, "ServiceUnavailable")
    assert_error(api.call(), 503, "ServiceUnavailable")
    assert api.call().status_code == 200


# --------------------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------------------


def test_requests_are_recorded(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> None:
    sim = start("multipage")
    api = api_for(sim)
    api.page("cn-beijing", 2, 10)
    api.call({"RegionId": "cn-beijing", "PageSize": "7"})
    api.call(secret="wrong")
    first, second, third = sim.requests
    assert (first.region, first.page, first.page_size, first.status, first.code) == (
        "cn-beijing",
        2,
        10,
        200,
        "Success",
    )
    assert first.access_key_id == DEFAULT_ACCESS_KEY_ID
    assert (second.region, second.code) == ("cn-beijing", "InvalidParameter")
    assert (third.region, third.code) == (None, "SignatureDoesNotMatch")
    assert first.at <= second.at <= third.at
    sim.clear_requests()
    assert sim.requests == []


# --------------------------------------------------------------------------------------
# Admin API
# --------------------------------------------------------------------------------------


def test_admin_api(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api], client: httpx.Client
) -> None:
    sim = start("demo")
    api = api_for(sim)
    admin = f"{sim.url}/_sim"
    as_json = {"Content-Type": "application/json"}  # every request but GET says it

    state = client.get(f"{admin}/state").json()
    assert state["step"] == 0
    assert state["steps"] == sim.total_steps
    assert [job["id"] for job in state["regions"]["cn-shanghai"]] == [
        "dtsdemo06",
        "dtsdemo07",
        "dtsdemo08",
        "dtsdemo10",  # migration jobs (DescribeDtsJobs shows them)
        "dtsdemo11",
    ]

    assert client.post(f"{admin}/advance", headers=as_json).json()["step"] == 1
    advanced = client.post(f"{admin}/advance", json={"n": 2}).json()
    assert advanced["step"] == 3
    assert advanced["note"]
    assert sim.step == 3
    assert client.post(f"{admin}/advance", json={"n": 0}).status_code == 400

    created = client.post(f"{admin}/faults", json={"kind": "throttle", "retry_after_ms": 1000})
    assert created.status_code == 201
    assert client.get(f"{admin}/faults").json()["faults"][0]["kind"] == "throttle"
    response = api.call()
    assert_error(response, 400, "Throttling.User")
    assert response.headers["x-acs-retry-after"] == "1000"
    client.post(f"{admin}/faults", json=[{"kind": "internal", "count": -1}, {"kind": "forbidden"}])
    assert client.delete(f"{admin}/faults", headers=as_json).json() == {"cleared": 2}
    bad = client.post(f"{admin}/faults", json={"kind": "meteor"})
    assert bad.status_code == 400
    assert "kind" in bad.json()["error"]
    assert client.post(f"{admin}/faults", content=b"{not", headers=as_json).status_code == 400

    requests = client.get(f"{admin}/requests").json()["requests"]
    assert [r["code"] for r in requests] == ["Throttling.User"]
    assert requests[0]["fault"] == "throttle"

    patched = client.patch(
        f"{admin}/jobs/dtsdemo01", json={"status": "Failed", "error_message": "boom"}
    )
    assert patched.status_code == 200
    assert api.page("cn-hangzhou")["SynchronizationInstances"][0]["ErrorMessage"] == "boom"
    assert client.patch(f"{admin}/jobs/nosuchjob", json={"status": "Failed"}).status_code == 400
    added = client.post(f"{admin}/jobs", json={"id": "dtsnew", "region": "cn-shenzhen"})
    assert added.status_code == 201
    assert _ids(api.page("cn-shenzhen")) == ["dtsnew"]
    assert client.delete(f"{admin}/jobs/dtsnew", headers=as_json).status_code == 200
    assert api.page("cn-shenzhen")["TotalRecordCount"] == 0

    assert client.post(f"{admin}/reset", headers=as_json).json() == {"step": 0}
    assert api.page("cn-hangzhou")["SynchronizationInstances"][0]["Status"] == "Synchronizing"
    assert client.get(f"{admin}/nothing").status_code == 404
    assert client.get(f"{admin}/advance").status_code == 404  # GET is not a route


# --------------------------------------------------------------------------------------
# The demo scenario, as a watcher polling it would see it
# --------------------------------------------------------------------------------------


@pytest.fixture
def demo_timeline(
    start: Callable[..., Simulator], api_for: Callable[[Simulator], Api]
) -> list[dict[str, dict[str, Any]]]:
    """The full listing of every region after each step: index 0 is before the first.
    (The demo's scripted outage at its last step is cleared: this is about the jobs.)"""
    sim = start("demo")
    api = api_for(sim)
    timeline = [api.snapshot()]
    while sim.step < sim.total_steps:
        sim.advance()
        sim.clear_faults()
        timeline.append(api.snapshot())
    return timeline


def _history(timeline: list[dict[str, dict[str, Any]]], key: str, field: str) -> list[Any]:
    return [snap[key][field] if key in snap else None for snap in timeline]


def _changes(values: list[Any]) -> list[Any]:
    """Consecutive duplicates collapsed: the sequence of states a watcher would report."""
    out: list[Any] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def test_demo_is_short_and_spans_two_regions(
    demo_timeline: list[dict[str, dict[str, Any]]],
) -> None:
    scenario = load_scenario("demo")
    assert scenario.step_seconds == 3.0
    assert 1 <= len(scenario.steps) <= 10
    first = demo_timeline[0]
    assert {job["_region"] for job in first.values()} == {"cn-hangzhou", "cn-shanghai"}
    assert len(first) >= 8  # plenty to discover at the first poll


def test_demo_two_way_job(demo_timeline: list[dict[str, dict[str, Any]]]) -> None:
    forward, reverse = demo_timeline[0]["dtsdemo05"], demo_timeline[0]["dtsdemo05/Reverse"]
    assert (forward["SynchronizationDirection"], reverse["SynchronizationDirection"]) == (
        "Forward",
        "Reverse",
    )
    assert forward["SourceEndpoint"] == reverse["DestinationEndpoint"]


def test_demo_precheck_fails_then_passes_on_rerun(
    demo_timeline: list[dict[str, dict[str, Any]]],
) -> None:
    statuses = _changes(_history(demo_timeline, "dtsdemo02", "Status"))
    assert statuses == [
        "NotStarted",
        "Prechecking",
        "PrecheckFailed",
        "Prechecking",
        "Initializating",
        "Synchronizing",
    ]
    failed_at = _history(demo_timeline, "dtsdemo02", "Status").index("PrecheckFailed")
    precheck = demo_timeline[failed_at]["dtsdemo02"]["PrecheckStatus"]
    assert precheck["Status"] == "Failed"
    failed = [item for item in precheck["Detail"] if item["CheckStatus"] == "Failed"]
    assert len(failed) >= 1
    assert all(item["ErrorMessage"] and item["RepairMethod"] for item in failed)
    passed_at = _history(demo_timeline, "dtsdemo02", "Status").index("Initializating")
    after = demo_timeline[passed_at]["dtsdemo02"]["PrecheckStatus"]
    assert after["Status"] == "Success"
    assert all(item["CheckStatus"] == "Success" for item in after["Detail"])


def test_demo_initialization_runs_through_both_stages(
    demo_timeline: list[dict[str, dict[str, Any]]],
) -> None:
    stages = _changes(
        [
            (
                job["Status"],
                job["StructureInitializationStatus"]["Status"],
                job["DataInitializationStatus"]["Status"],
            )
            for job in (snap["dtsdemo03"] for snap in demo_timeline)
        ]
    )
    assert stages[0][0] == "Prechecking"
    assert ("Initializating", "Migrating", "NotStarted") in stages
    assert ("Initializating", "Finished", "Migrating") in stages
    assert stages[-1] == ("Synchronizing", "Finished", "Finished")


def test_demo_initialization_fails(demo_timeline: list[dict[str, dict[str, Any]]]) -> None:
    statuses = _history(demo_timeline, "dtsdemo04", "Status")
    assert statuses[0] == "Initializating"
    failed = demo_timeline[statuses.index("InitializeFailed")]["dtsdemo04"]
    stage = failed["StructureInitializationStatus"]
    assert stage["Status"] == "Failed"
    assert "DTS-1020042" in stage["ErrorMessage"]
    assert failed["ErrorMessage"]


def test_demo_delay_crosses_both_thresholds_and_back(
    demo_timeline: list[dict[str, dict[str, Any]]],
) -> None:
    delays = [int(d) for d in _history(demo_timeline, "dtsdemo01", "Delay")]
    levels = _changes([0 if d <= 60 else 1 if d <= 300 else 2 for d in delays])
    assert levels == [0, 1, 2, 1, 0]


def test_demo_job_fails_with_message_and_recovers(
    demo_timeline: list[dict[str, dict[str, Any]]],
) -> None:
    statuses = _history(demo_timeline, "dtsdemo05/Reverse", "Status")
    assert _changes(statuses) == ["Synchronizing", "Failed", "Synchronizing"]
    failed = demo_timeline[statuses.index("Failed")]["dtsdemo05/Reverse"]
    assert failed["ErrorMessage"].startswith("DTS-070211")
    assert "ErrorMessage" not in demo_timeline[-1]["dtsdemo05/Reverse"]
    assert set(_history(demo_timeline, "dtsdemo05", "Status")) == {"Synchronizing"}  # forward half


def test_demo_pause_finish_remove_and_new_job(
    demo_timeline: list[dict[str, dict[str, Any]]],
) -> None:
    assert _changes(_history(demo_timeline, "dtsdemo06", "Status")) == [
        "Synchronizing",
        "Suspending",
        "Synchronizing",
    ]
    assert _changes(_history(demo_timeline, "dtsdemo07", "Status")) == ["Synchronizing", "Finished"]
    removed = _history(demo_timeline, "dtsdemo08", "Status")
    assert removed[0] == "Synchronizing"
    assert removed[-1] is None
    appeared = _history(demo_timeline, "dtsdemo09", "Status")
    assert appeared[0] is None
    assert 0 < appeared.index("Prechecking") < len(demo_timeline) - 1  # mid-way
    assert appeared[-1] == "Synchronizing"


def test_demo_every_state_lasts_a_step(demo_timeline: list[dict[str, dict[str, Any]]]) -> None:
    # A watcher polling once per step sees every change: no step undoes the previous one.
    for before, after in itertools.pairwise(demo_timeline):
        assert before != after


# --------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------


def _simulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dts-simulator")]


def test_stop_releases_port_and_threads(clock: Clock, client: httpx.Client) -> None:
    before = set(_simulator_threads())
    with Simulator("demo", clock=clock) as sim:
        url = sim.url
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        api = Api(sim, client, clock)  # the client keeps its connection open (keep-alive)
        assert api.call().status_code == 200
        assert api.call().status_code == 200
        sim.stop()  # must not wait for the client to hang up
        assert not sim.running
        with pytest.raises(httpx.TransportError):
            client.get(url, timeout=2)
    assert set(_simulator_threads()) <= before
    sim.stop()  # twice is fine


def test_restart_after_stop(clock: Clock, client: httpx.Client) -> None:
    sim = Simulator("demo", clock=clock)
    with sim:
        assert Api(sim, client, clock).call().status_code == 200
    with sim:
        assert Api(sim, client, clock).call().status_code == 200


@pytest.mark.anyio
async def test_async_context_manager(clock: Clock) -> None:
    async with Simulator("demo", clock=clock) as sim, httpx.AsyncClient() as client:
        signed = sign_request(
            method="GET",
            host=sim.url.removeprefix("http://"),
            scheme="http",
            action="DescribeSynchronizationJobs",
            params={"RegionId": "cn-shanghai"},
            access_key_id=DEFAULT_ACCESS_KEY_ID,
            access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
            security_token=None,
            now=clock.at,
            nonce="async-nonce",
        )
        response = await client.get(signed.url, headers=signed.headers)
        assert response.json()["TotalRecordCount"] == 3
    assert not sim.running


def test_auto_advance(clock: Clock) -> None:
    with Simulator("demo", clock=clock, auto_advance=0.01) as sim:
        assert sim.wait_for_step(sim.total_steps, timeout=10)
        assert sim.job("dtsdemo08") is None  # the last step was applied
    assert sim.step == sim.total_steps


def test_a_reset_after_the_last_step_starts_the_timeline_again(clock: Clock) -> None:
    with Simulator("demo", clock=clock, auto_advance=0.01) as sim:
        assert sim.wait_for_step(sim.total_steps, timeout=10)
        sim.reset()
        assert sim.step < sim.total_steps
        assert sim.wait_for_step(sim.total_steps, timeout=10)  # auto-advanced again
    assert not sim.running  # and stop() still ends the waiting ticker


def test_a_busy_port_is_one_clear_error() -> None:
    with Simulator(None) as first:
        taken = Simulator(None, port=first.address[1])
        with pytest.raises(SimulatorBindError, match=f"127.0.0.1:{first.address[1]}"):
            taken.start()
        assert not taken.running


def test_serve_prints_how_to_connect_and_stops_on_sigint(client: httpx.Client) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = "from dts_sim.runner import serve; raise SystemExit(serve('multipage', auto_advance=0))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        output = "".join(lines)
        url = re.search(r"DTS_WATCHER_DTS__ENDPOINT=(\S+)", output)
        assert url, output
        assert f"ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}" in output
        assert f"ALIBABA_CLOUD_ACCESS_KEY_SECRET={DEFAULT_ACCESS_KEY_SECRET}" in output
        regions = re.search(r"DTS_WATCHER_DTS__REGIONS='(.+)'", output)
        assert regions
        assert json.loads(regions.group(1)) == ["cn-hangzhou", "cn-beijing", "cn-shenzhen"]
        assert client.post(f"{url.group(1)}/_sim/advance", json={}).json()["step"] == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
