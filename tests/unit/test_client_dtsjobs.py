"""DtsClient with DescribeDtsJobs and several accounts, against an in-process fake DTS
(httpx.MockTransport): the parameters on the wire, the page-size fallback, a refusal
with HTTP 200, and shards that fail alone."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest
from pydantic import SecretStr

from watcher.dts.apis import DtsJobsApi, LegacyApi, ShardSource
from watcher.dts.client import DtsClient
from watcher.dts.credentials import Credentials, CredentialsError, StaticProvider
from watcher.settings import DtsSettings
from watcher.snapshot import Shard

pytestmark = pytest.mark.anyio

HZ = "cn-hangzhou"


def provider(key: str = "key-default") -> StaticProvider:
    return StaticProvider(Credentials(key, SecretStr("secret")))


class Broken:
    """Credentials that cannot be had (a role that cannot be assumed)."""

    def describe(self) -> str:
        return "broken"

    async def get(self) -> Credentials:
        raise CredentialsError(
            "STS AssumeRole of acs:ram::1:role/x failed: the role does not exist"
        )

    async def refresh(self) -> Credentials:
        return await self.get()


class FakeDtsJobs:
    """Serves `jobs[(key id, job type)]` by page, refusing page sizes above `largest`."""

    def __init__(self, jobs: dict[tuple[str, str], list[dict[str, Any]]], largest: int = 100):
        self.jobs = jobs
        self.largest = largest
        self.calls: list[dict[str, str]] = []
        self.answer: dict[str, Any] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True))
        key = request.headers["authorization"].split("Credential=")[1].split(",")[0]
        params["_action"] = request.headers["x-acs-action"]
        params["_key"] = key
        self.calls.append(params)
        if self.answer is not None:
            return httpx.Response(200, json=self.answer)
        size, number = int(params["PageSize"]), int(params["PageNumber"])
        if size > self.largest:
            return httpx.Response(
                400,
                json={"Code": "InvalidParameter", "Message": "PageSize", "RequestId": "R"},
            )
        kind = {"MIGRATION": "migration", "SYNC": "sync", "SUBSCRIBE": "subscribe"}
        items = self.jobs.get((key, kind[params.get("JobType", "MIGRATION")]), [])
        page = items[(number - 1) * size : number * size]
        return httpx.Response(
            200,
            json={
                "Success": True,
                "TotalRecordCount": len(items),
                "PageNumber": number,
                "RequestId": f"R{len(self.calls)}",
                "DtsJobList": page,
            },
        )


def entry(job_id: str, job_type: str, delay: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "DtsJobId": job_id,
        "DtsInstanceID": f"dts{job_id}",
        "JobType": {"migration": "online"}.get(job_type, job_type),
        "Status": {"migration": "Migrating", "subscribe": "Normal"}.get(job_type, "Synchronizing"),
        "Delay": delay,
        **extra,
    }


def settings(**values: Any) -> DtsSettings:
    base: dict[str, Any] = {
        "regions": [HZ],
        "api": "DescribeDtsJobs",
        "backoff_initial": 0.001,
        "backoff_max": 0.002,
        "rate_limit": 20,
    }
    return DtsSettings(**{**base, **values})


async def test_every_job_type_is_listed_with_its_job_type_always_sent() -> None:
    fake = FakeDtsJobs(
        {
            ("key-default", "sync"): [entry("s1", "sync", 7)],
            ("key-default", "migration"): [entry("m1", "migration", 7250)],
            ("key-default", "subscribe"): [entry("c1", "subscribe", 2)],
        }
    )
    async with DtsClient(settings(), provider(), transport=httpx.MockTransport(fake.handler)) as c:
        snapshot = await c.fetch()
    assert snapshot.complete
    assert {(j.job_id, j.job_type, j.delay_seconds) for j in snapshot} == {
        ("s1", "sync", 7),
        ("m1", "migration", 7),  # 7,250 ms
        ("c1", "subscribe", 2),
    }
    assert [c["JobType"] for c in fake.calls] == ["SYNC", "MIGRATION", "SUBSCRIBE"]
    assert {c["_action"] for c in fake.calls} == {"DescribeDtsJobs"}
    assert all("PageNumber" in c and "PageNum" not in c for c in fake.calls)
    outcome = snapshot.regions[HZ]
    assert outcome.job_types == frozenset({"sync", "migration", "subscribe"})


async def test_only_the_configured_job_types_are_listed() -> None:
    fake = FakeDtsJobs({("key-default", "migration"): [entry("m1", "migration")]})
    s = settings(job_types=["migration"])
    async with DtsClient(s, provider(), transport=httpx.MockTransport(fake.handler)) as c:
        snapshot = await c.fetch()
    assert [c["JobType"] for c in fake.calls] == ["MIGRATION"]
    assert snapshot.regions[HZ].job_types == frozenset({"migration"})


async def test_a_refused_page_size_falls_back_without_losing_the_listing() -> None:
    many = [entry(f"s{n:03d}", "sync") for n in range(65)]
    fake = FakeDtsJobs({("key-default", "sync"): many}, largest=30)
    s = settings(job_types=["sync"])
    async with DtsClient(s, provider(), transport=httpx.MockTransport(fake.handler)) as c:
        first = await c.fetch()
        second = await c.fetch()
    assert first.complete and len(first) == 65
    assert second.complete and len(second) == 65
    sizes = [(c["PageNumber"], c["PageSize"]) for c in fake.calls]
    # 100 refused once, then 30 for the rest of that cycle and the next
    assert sizes[0] == ("1", "100")
    assert len(sizes) == 1 + 3 + 3
    assert all(size == "30" for _, size in sizes[1:])


async def test_the_largest_page_size_is_used_when_accepted() -> None:
    many = [entry(f"s{n:03d}", "sync") for n in range(65)]
    fake = FakeDtsJobs({("key-default", "sync"): many})
    async with DtsClient(
        settings(job_types=["sync"]), provider(), transport=httpx.MockTransport(fake.handler)
    ) as c:
        snapshot = await c.fetch()
    assert snapshot.complete and len(snapshot) == 65
    assert [c["PageSize"] for c in fake.calls] == ["100"]


async def test_success_false_fails_the_shard_with_dts_code() -> None:
    fake = FakeDtsJobs({})
    fake.answer = {
        "Success": False,
        "ErrCode": "Forbidden.RAM",
        "ErrMessage": "no",
        "RequestId": "R",
    }
    async with DtsClient(settings(), provider(), transport=httpx.MockTransport(fake.handler)) as c:
        snapshot = await c.fetch()
    assert not snapshot.complete
    assert snapshot.regions[HZ].error_code == "Forbidden.RAM"


async def test_a_failing_account_does_not_blind_another() -> None:
    fake = FakeDtsJobs({("key-prod", "sync"): [entry("p1", "sync")]})
    s = settings(job_types=["sync"])
    api = DtsJobsApi(s)
    shards = [
        ShardSource(Shard("prod", HZ), api, provider("key-prod")),
        ShardSource(Shard("dev", HZ), api, Broken()),
        ShardSource(Shard("legacy", HZ), LegacyApi(s), provider("key-legacy")),
    ]
    legacy_calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["x-acs-action"] == "DescribeSynchronizationJobs":
            legacy_calls.append(request)
            return httpx.Response(200, json={"TotalRecordCount": 0, "SynchronizationInstances": []})
        return fake.handler(request)

    async with DtsClient(s, provider(), shards=shards, transport=httpx.MockTransport(handler)) as c:
        snapshot = await c.fetch()
    assert {label: o.complete for label, o in snapshot.regions.items()} == {
        "prod/cn-hangzhou": True,
        "dev/cn-hangzhou": False,
        "legacy/cn-hangzhou": True,
    }
    assert snapshot.regions["dev/cn-hangzhou"].error_code == "CredentialsUnavailable"
    assert "the role does not exist" in (snapshot.regions["dev/cn-hangzhou"].error or "")
    assert [(j.account, j.job_id) for j in snapshot] == [("prod", "p1")]
    assert {c["_key"] for c in fake.calls} == {"key-prod"}  # each with its own key
    assert len(legacy_calls) == 1 and "PageNum=1" in str(legacy_calls[0].url)
    assert set(c.stats.requests) == {("prod/cn-hangzhou", "OK"), ("legacy/cn-hangzhou", "OK")}


async def test_shards_are_paced_each_on_its_own() -> None:
    """Two accounts in one region: each has its own limiter (DTS counts per account)."""
    s = settings(job_types=["sync"], rate_limit=1)
    api = DtsJobsApi(s)
    fake = FakeDtsJobs({})
    shards = [ShardSource(Shard(a, HZ), api, provider(f"key-{a}")) for a in ("a", "b")]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await anyio.lowlevel.checkpoint()

    async with DtsClient(
        s,
        provider(),
        shards=shards,
        transport=httpx.MockTransport(fake.handler),
        sleep=sleep,
        clock=lambda: 100.0,
    ) as c:
        snapshot = await c.fetch()
    assert snapshot.complete
    assert slept == []  # one request each: neither waited for the other


async def test_unchanged_entries_are_not_parsed_again_and_changed_ones_are() -> None:
    two_way = entry("s1", "sync", DtsJobDirection="Forward", ReverseJob=entry("s1r", "sync"))
    fake = FakeDtsJobs({("key-default", "sync"): [two_way, entry("s2", "sync")]})
    s = settings(job_types=["sync"])
    async with DtsClient(s, provider(), transport=httpx.MockTransport(fake.handler)) as c:
        first = {j.key: j for j in await c.fetch()}
        second = {j.key: j for j in await c.fetch()}
        fake.jobs[("key-default", "sync")][0]["ReverseJob"]["Status"] = "Failed"
        third = {j.key: j for j in await c.fetch()}
    assert len(first) == 3
    assert all(second[key] is job for key, job in first.items())  # the very same objects
    changed = {key: job.status for key, job in third.items() if job is not first[key]}
    assert sorted(changed.values()) == ["Failed", "Synchronizing"]  # the entry's two halves
    assert [j.status for j in third.values() if j.job_id == "s1r"] == ["Failed"]
