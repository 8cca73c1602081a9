"""The DTS client against the simulator: real HTTP, real signatures, injected faults.

Retries use tiny backoffs here (settings), so the faults cost milliseconds, not seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Simulator
from watcher.dts.client import DtsClient
from watcher.dts.credentials import Credentials, StaticProvider
from watcher.settings import DtsSettings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

REGIONS = ["cn-hangzhou", "cn-beijing", "cn-shenzhen"]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator("multipage") as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _clean(sim: Simulator) -> None:
    sim.clear_faults()
    sim.clear_requests()


def client(sim: Simulator, secret: str = DEFAULT_ACCESS_KEY_SECRET, **settings: Any) -> DtsClient:
    values: dict[str, Any] = {
        "regions": REGIONS,
        "endpoint": sim.url,
        "backoff_initial": 0.01,
        "backoff_max": 0.02,
        "rate_limit": 20,
        "timeout": 2,
    }
    values.update(settings)
    provider = StaticProvider(Credentials(DEFAULT_ACCESS_KEY_ID, SecretStr(secret)))
    return DtsClient(DtsSettings(**values), provider)


def expected_ids(sim: Simulator, region: str | None = None) -> set[str]:
    return {f"{j.id}/{j.direction}" for j in sim.jobs(region)}


async def test_every_job_of_a_multi_page_multi_region_scenario(sim: Simulator) -> None:
    async with client(sim) as c:
        snapshot = await c.fetch()
    assert snapshot.complete
    assert {f"{j.job_id}/{j.direction}" for j in snapshot} == expected_ids(sim)
    assert {r: o.pages for r, o in snapshot.regions.items()} == {
        "cn-hangzhou": 3,
        "cn-beijing": 2,
        "cn-shenzhen": 1,
    }
    # The minimum number of requests: ceil(jobs / 30) per region, one for an empty region.
    assert len(sim.requests) == 6


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "throttle", "count": 3, "retry_after_ms": 20},
        {"kind": "unavailable", "count": 2},
        {"kind": "internal", "count": 2},
        {"kind": "malformed", "variant": "truncated", "count": 1},
        {"kind": "malformed", "variant": "html", "count": 1},
        {"kind": "malformed", "variant": "array", "count": 1},
        {"kind": "slow", "seconds": 1.5, "count": 1},
        {"kind": "unavailable", "region": "cn-hangzhou", "page": 2, "count": 2},
    ],
    ids=lambda f: "-".join(str(v) for v in f.values()),
)
async def test_transient_faults_are_survived(sim: Simulator, fault: dict[str, Any]) -> None:
    sim.inject(fault)
    async with client(sim, timeout=0.5) as c:
        snapshot = await c.fetch()
    assert snapshot.complete
    assert {f"{j.job_id}/{j.direction}" for j in snapshot} == expected_ids(sim)
    assert sum(c.stats.retries.values()) >= 1
    assert any(r.fault == fault["kind"] for r in sim.requests)
    if fault["kind"] == "slow":  # the client gave up waiting, then retried
        assert any(outcome == "Timeout" for _, outcome in c.stats.requests)


async def test_a_throttling_storm_past_the_retry_budget_is_an_incomplete_region(
    sim: Simulator,
) -> None:
    sim.inject({"kind": "throttle", "region": "cn-beijing", "count": -1, "retry_after_ms": 5})
    async with client(sim, max_attempts=3) as c:
        snapshot = await c.fetch()
    assert not snapshot.complete
    assert snapshot.complete_regions == {"cn-hangzhou", "cn-shenzhen"}
    outcome = snapshot.regions["cn-beijing"]
    assert outcome.error_code == "Throttling.User"
    assert not any(j.region == "cn-beijing" for j in snapshot)
    assert sum(1 for r in sim.requests if r.region == "cn-beijing") == 3


async def test_one_failing_page_of_many_makes_only_its_region_incomplete(sim: Simulator) -> None:
    sim.inject({"kind": "internal", "region": "cn-hangzhou", "page": 3, "count": -1})
    async with client(sim, max_attempts=2) as c:
        snapshot = await c.fetch()
    assert snapshot.complete_regions == {"cn-beijing", "cn-shenzhen"}
    assert snapshot.regions["cn-hangzhou"].error_code == "InternalError"
    assert not any(j.region == "cn-hangzhou" for j in snapshot)


async def test_listing_drift_is_detected_and_reread(sim: Simulator) -> None:
    sim.inject({"kind": "drift", "region": "cn-hangzhou", "page": 2, "action": "remove"})
    async with client(sim) as c:
        snapshot = await c.fetch()
    assert snapshot.complete
    # The re-read sees the listing as it is after the drift, with nothing missed or doubled.
    assert {f"{j.job_id}/{j.direction}" for j in snapshot} == expected_ids(sim)


@pytest.mark.parametrize(
    ("secret", "code"),
    [("wrong-secret", "SignatureDoesNotMatch")],
)
async def test_rejected_credentials_fail_fast(sim: Simulator, secret: str, code: str) -> None:
    async with client(sim, secret=secret) as c:
        snapshot = await c.fetch()
    assert not snapshot.complete and len(snapshot) == 0
    assert {o.error_code for o in snapshot.regions.values()} == {code}
    assert len(sim.requests) == len(REGIONS)  # one try per region: retrying cannot help
    assert secret not in repr(snapshot.regions)


async def test_forbidden_region_while_others_work(sim: Simulator) -> None:
    sim.inject({"kind": "forbidden", "region": "cn-shenzhen", "count": -1})
    async with client(sim) as c:
        snapshot = await c.fetch()
    assert snapshot.complete_regions == {"cn-hangzhou", "cn-beijing"}
    assert snapshot.regions["cn-shenzhen"].error_code == "Forbidden.RAM"


async def test_the_rate_limit_is_never_exceeded(sim: Simulator) -> None:
    rate = 4.0
    async with client(sim, rate_limit=rate, regions=["cn-hangzhou"]) as c:
        for _ in range(3):
            assert (await c.fetch()).complete
    starts = sorted(r.at for r in sim.requests if r.region == "cn-hangzhou")
    assert len(starts) == 9
    # No window of one second holds more than `rate` request starts (+1 for the edges,
    # since arrival times carry a little scheduling noise).
    for first, later in itertools.combinations(range(len(starts)), 2):
        if later - first + 1 > rate + 1:
            assert starts[later] - starts[first] >= 1.0 - 0.1
