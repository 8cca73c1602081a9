"""DtsClient against an in-process fake DTS (httpx.MockTransport, below the I/O boundary).

Time is fake too: `FakeTime.sleep` advances a virtual clock instead of waiting, so retry
and rate-limit behaviour is exact and the tests take milliseconds.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest
from pydantic import SecretStr

from watcher.dts import signing
from watcher.dts.client import PACE, DtsClient, RateLimiter, endpoint_host
from watcher.dts.credentials import Credentials, StaticProvider
from watcher.logs import configure
from watcher.settings import DtsSettings

pytestmark = pytest.mark.anyio

KEY_ID, SECRET = "test-key-id", "test-secret-value-never-logged"


class FakeTime:
    """A virtual clock. `frozen`: sleeps are recorded but time stands still, so each wait
    equals how far ahead a rate-limited request was scheduled (exact with concurrency)."""

    def __init__(self, frozen: bool = False) -> None:
        self.now = 1000.0
        self.frozen = frozen
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.frozen:
            self.now += seconds
        await anyio.lowlevel.checkpoint()


def job(job_id: str, **extra: Any) -> dict[str, Any]:
    return {"SynchronizationJobId": job_id, "Status": "Synchronizing", "Delay": "1", **extra}


class FakeDts:
    """Serves `jobs[region]` by page; `script` can replace the answer to the n-th request."""

    def __init__(self, jobs: dict[str, list[dict[str, Any]]]) -> None:
        self.jobs = jobs
        self.requests: list[httpx.Request] = []
        self.script: dict[int, Callable[[httpx.Request], httpx.Response]] = {}
        self.times: list[tuple[str, float]] = []
        self.time: FakeTime | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        params = dict(parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True))
        if self.time:
            self.times.append((params["RegionId"], self.time.now))
        scripted = self.script.get(len(self.requests))
        if scripted is not None:
            return scripted(request)
        region = params["RegionId"]
        size, number = int(params["PageSize"]), int(params["PageNum"])
        items = self.jobs.get(region, [])
        page = items[(number - 1) * size : number * size]
        return httpx.Response(
            200,
            json={
                "TotalRecordCount": len(items),
                "PageNumber": number,
                "PageRecordCount": len(page),
                "RequestId": f"req-{len(self.requests)}",
                "SynchronizationInstances": page,
            },
        )


def error(status: int, code: str, message: str = "boom", **headers: str) -> Any:
    body = {"RequestId": "ERR-REQ-1", "HostId": "dts", "Code": code, "Message": message}
    return lambda request: httpx.Response(status, json=body, headers=headers)


def make_client(
    fake: FakeDts, time: FakeTime | None = None, provider: Any = None, **settings: Any
) -> DtsClient:
    time = time or FakeTime()
    fake.time = time
    base: dict[str, Any] = {"regions": ["cn-hangzhou"], "endpoint": "http://dts.test"}
    base.update(settings)
    provider = provider or StaticProvider(Credentials(KEY_ID, SecretStr(SECRET)))
    return DtsClient(
        DtsSettings(**base),
        provider,
        transport=httpx.MockTransport(fake.handler),
        sleep=time.sleep,
        clock=time.clock,
        rand=lambda: 0.5,
        now=lambda: datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC),
    )


async def test_reads_every_page_of_every_region() -> None:
    fake = FakeDts(
        {
            "cn-hangzhou": [job(f"hz{i:03}") for i in range(65)],
            "cn-shanghai": [job(f"sh{i:03}") for i in range(30)],
            "cn-beijing": [],
        }
    )
    async with make_client(fake, regions=["cn-hangzhou", "cn-shanghai", "cn-beijing"]) as client:
        snapshot = await client.fetch()
    assert snapshot.complete
    assert len(snapshot) == 95
    assert {r: o.pages for r, o in snapshot.regions.items()} == {
        "cn-hangzhou": 3,
        "cn-shanghai": 1,
        "cn-beijing": 1,
    }
    assert len(fake.requests) == 5  # the minimum: ceil(n / 30) per region, 1 for empty


async def test_requests_are_signed_and_verifiable() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    async with make_client(
        fake, job_name="订单 sync/1", tags={"env": "prod", "team": "data"}
    ) as client:
        await client.fetch()
    request = fake.requests[0]
    params = dict(parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True))
    assert params["SynchronizationJobName"] == "订单 sync/1"
    assert params["Tag.1.Key"] == "env" and params["Tag.2.Value"] == "data"
    auth = signing.parse_authorization(request.headers["authorization"])
    assert auth is not None and auth["Credential"] == KEY_ID
    to_sign, _ = signing.string_to_sign(
        "GET",
        "/",
        params,
        dict(request.headers),
        signed_header_names=auth["SignedHeaders"].split(";"),
    )
    assert signing.signature(SECRET, to_sign) == auth["Signature"]
    assert request.headers["x-acs-action"] == "DescribeSynchronizationJobs"
    assert request.headers["x-acs-version"] == "2020-01-01"


async def test_throttling_is_retried_after_the_servers_hint() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    fake.script[1] = error(400, "Throttling.User", **{"x-acs-retry-after": "1500"})
    time = FakeTime()
    async with make_client(fake, time) as client:
        snapshot = await client.fetch()
    assert snapshot.complete and len(snapshot) == 1
    assert 1.5 in time.sleeps  # milliseconds in the header, seconds here
    nonces = {r.headers["x-acs-signature-nonce"] for r in fake.requests}
    assert len(nonces) == 2  # the retry was freshly signed


async def test_5xx_and_timeouts_back_off_exponentially_then_succeed() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    fake.script[1] = error(503, "ServiceUnavailable")
    fake.script[2] = error(500, "InternalError")

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    fake.script[3] = timeout
    time = FakeTime()
    async with make_client(fake, time, backoff_initial=1.0) as client:
        snapshot = await client.fetch()
    assert snapshot.complete
    backoffs = [s for s in time.sleeps if s in (0.5, 1.0, 2.0)]
    assert backoffs == [0.5, 1.0, 2.0]  # rand()=0.5 times 1, 2, 4
    assert client.stats.retries["cn-hangzhou"] == 3


async def test_retries_give_up_and_the_region_is_incomplete() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")], "cn-shanghai": [job("b")]})
    for n in range(1, 20):
        fake.script[n] = error(503, "ServiceUnavailable")
    async with make_client(fake, regions=["cn-hangzhou"], max_attempts=3) as client:
        snapshot = await client.fetch()
    assert not snapshot.complete
    assert len(fake.requests) == 3
    outcome = snapshot.regions["cn-hangzhou"]
    assert outcome.error_code == "ServiceUnavailable" and "ERR-REQ-1" in (outcome.error or "")
    assert len(snapshot) == 0  # nothing half-read is passed on


@pytest.mark.parametrize(
    "body",
    [b"<html>gateway error</html>", b'{"TotalRecordCount": 1, "Synchron', b"[1, 2, 3]", b""],
    ids=["html", "truncated", "array", "empty"],
)
async def test_malformed_bodies_are_retried_then_reported(body: bytes) -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    for n in range(1, 10):
        fake.script[n] = lambda request: httpx.Response(200, content=body)
    async with make_client(fake, max_attempts=2) as client:
        snapshot = await client.fetch()
    assert not snapshot.complete
    assert snapshot.regions["cn-hangzhou"].error_code == "MalformedResponse"
    assert len(fake.requests) == 2


async def test_a_malformed_body_once_is_survived() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    fake.script[1] = lambda request: httpx.Response(200, content=b"<html>")
    async with make_client(fake) as client:
        snapshot = await client.fetch()
    assert snapshot.complete and len(snapshot) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "SignatureDoesNotMatch"),
        (404, "InvalidAccessKeyId.NotFound"),
        (403, "Forbidden.RAM"),
        (400, "InvalidTimeStamp.Expired"),
    ],
)
async def test_other_client_errors_fail_fast_with_code_message_and_request_id(
    status: int, code: str
) -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    fake.script[1] = error(status, code, "you may not")
    async with make_client(fake) as client:
        snapshot = await client.fetch()
    assert len(fake.requests) == 1
    outcome = snapshot.regions["cn-hangzhou"]
    assert outcome.error_code == code
    assert "you may not" in (outcome.error or "") and "ERR-REQ-1" in (outcome.error or "")


async def test_expired_token_rereads_credentials_once() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    fake.script[1] = error(403, "InvalidSecurityToken.Expired")
    reloads: list[int] = []

    def reload() -> Credentials:
        reloads.append(1)
        return Credentials(KEY_ID, SecretStr(SECRET), SecretStr("fresh-token"))

    provider = StaticProvider(Credentials(KEY_ID, SecretStr(SECRET), SecretStr("old")), reload)
    async with make_client(fake, provider=provider) as client:
        snapshot = await client.fetch()
    assert snapshot.complete and reloads == [1]
    assert fake.requests[1].headers["x-acs-security-token"] == "fresh-token"


async def test_expired_token_twice_is_a_failure_not_a_loop() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")]})
    for n in range(1, 10):
        fake.script[n] = error(403, "InvalidSecurityToken.Expired")
    provider = StaticProvider(Credentials(KEY_ID, SecretStr(SECRET)), lambda: provider_creds)
    provider_creds = Credentials(KEY_ID, SecretStr(SECRET))
    async with make_client(fake, provider=provider) as client:
        snapshot = await client.fetch()
    assert not snapshot.complete and len(fake.requests) == 2


async def test_listing_drift_is_reread_then_succeeds() -> None:
    jobs = [job(f"j{i:02}") for i in range(40)]
    fake = FakeDts({"cn-hangzhou": jobs})

    def shifted(request: httpx.Request) -> httpx.Response:
        # A job was deleted after page 1 was read: page 2 now starts one job later,
        # and the total went down. A naive reader would silently miss a job.
        fake.jobs["cn-hangzhou"] = jobs[:5] + jobs[6:]
        return _serve(fake, request)

    fake.script[2] = shifted
    async with make_client(fake) as client:
        snapshot = await client.fetch()
    assert snapshot.complete
    assert len(snapshot) == 39  # re-read after the drift, consistent this time
    assert len(fake.requests) == 4


def _serve(fake: FakeDts, request: httpx.Request) -> httpx.Response:
    params = dict(parse_qsl(urlsplit(str(request.url)).query))
    size, number = int(params["PageSize"]), int(params["PageNum"])
    items = fake.jobs[params["RegionId"]]
    page = items[(number - 1) * size : number * size]
    return httpx.Response(
        200, json={"TotalRecordCount": len(items), "SynchronizationInstances": page}
    )


async def test_persistent_drift_makes_the_region_incomplete() -> None:
    jobs = [job(f"j{i:02}") for i in range(40)]
    fake = FakeDts({"cn-hangzhou": jobs})

    def duplicate_page(request: httpx.Request) -> httpx.Response:
        # Page 2 repeats a job from page 1 (a job was created at the front meanwhile).
        body = {"TotalRecordCount": 40, "SynchronizationInstances": jobs[29:39]}
        return httpx.Response(200, json=body)

    for n in range(2, 40, 2):
        fake.script[n] = duplicate_page
    async with make_client(fake, drift_rereads=2) as client:
        snapshot = await client.fetch()
    assert not snapshot.complete
    assert snapshot.regions["cn-hangzhou"].error_code == "ListingDrift"
    assert "appeared twice" in (snapshot.regions["cn-hangzhou"].error or "")
    assert len(fake.requests) == 6  # three full reads of two pages


async def test_one_failing_region_leaves_the_others_complete() -> None:
    fake = FakeDts({"cn-hangzhou": [job("a")], "cn-shanghai": [job("b")]})

    def by_region(request: httpx.Request) -> httpx.Response:
        if "cn-shanghai" in str(request.url):
            return error(403, "Forbidden.RAM")(request)
        return _serve(fake, request)

    for n in range(1, 5):
        fake.script[n] = by_region
    async with make_client(fake, regions=["cn-hangzhou", "cn-shanghai"]) as client:
        snapshot = await client.fetch()
    assert not snapshot.complete
    assert snapshot.complete_regions == {"cn-hangzhou"}
    assert [j.job_id for j in snapshot] == ["a"]


async def test_rate_limiter_spaces_concurrent_request_starts() -> None:
    # A frozen clock: each acquire's sleep is exactly how far in the future it may start.
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    limiter = RateLimiter(4.0, clock=lambda: 50.0, sleep=record)
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(limiter.acquire)
    # The first starts now, the others 0.25 s apart: never more than 4 per second.
    assert sorted(waits) == [0.25, 0.5, 0.75, 1.0, 1.25]


async def test_regions_are_paced_separately() -> None:
    fake = FakeDts({r: [job(f"{r}-{i}") for i in range(90)] for r in ("cn-hangzhou", "cn-beijing")})
    time = FakeTime(frozen=True)
    async with make_client(fake, time, regions=["cn-hangzhou", "cn-beijing"], rate_limit=2) as c:
        snapshot = await c.fetch()
    assert snapshot.complete and len(snapshot) == 180
    # 3 pages per region at 2/s: each region waits 0.5 + 1.0 (not 2.5 as one shared queue),
    # stretched by the 5% the client keeps below the limit.
    assert sum(time.sleeps) == pytest.approx(3.0 / PACE)


async def test_secret_never_appears_in_logs_errors_or_reprs() -> None:
    stream = io.StringIO()
    configure("debug", "json", stream=stream)
    try:
        fake = FakeDts({"cn-hangzhou": [job("a")]})
        fake.script[1] = error(503, "ServiceUnavailable")
        fake.script[2] = error(403, "Forbidden.RAM")
        provider = StaticProvider(Credentials(KEY_ID, SecretStr(SECRET), SecretStr("sts-tok")))
        async with make_client(fake, provider=provider) as client:
            snapshot = await client.fetch()
        text = stream.getvalue() + repr(snapshot) + repr(await provider.get())
        text += json.dumps(snapshot.to_dict(), default=str)
        assert "Forbidden.RAM" in text  # the failure itself is reported...
        assert SECRET not in text and "sts-tok" not in text  # ...its secrets are not
    finally:
        logging.getLogger().handlers.clear()


def test_endpoints_follow_alibabas_table() -> None:
    assert endpoint_host("cn-hangzhou") == "dts.cn-hangzhou.aliyuncs.com"
    assert endpoint_host("ap-southeast-1") == "dts.ap-southeast-1.aliyuncs.com"
    assert endpoint_host("cn-chengdu") == "dts.aliyuncs.com"
    assert endpoint_host("cn-wulanchabu") == "dts.aliyuncs.com"
