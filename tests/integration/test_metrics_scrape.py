"""`/metrics` after a scenario: a real watcher (simulator + nats-server), scraped over HTTP.

The hooks the service will call are called here by hand, as the loop would: after each
cycle and after each drain of the outbox. Everything else is read from the live watcher
at scrape time, so the numbers must match what the scenario implies exactly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.watcher import make_settings
from watcher.http import serve_http
from watcher.metrics import Metrics
from watcher.service import CycleResult, Watcher, open_watcher

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


SHARD = (("account", "default"), ("job_type", "sync"))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


class Harness:
    def __init__(self, watcher: Watcher, metrics: Metrics, url: str) -> None:
        self.watcher = watcher
        self.metrics = metrics
        self.url = url

    async def cycle(self) -> CycleResult:
        """One cycle, as the service runs it (it reports to the watcher's metrics)."""
        return await self.watcher.cycle()

    async def drain(self) -> int:
        """One drain, as the publisher's loop runs it (timed for the metrics)."""
        return await self.watcher.publisher.timed_drain()

    async def scrape(self) -> Samples:
        async with httpx.AsyncClient() as http:
            response = await http.get(self.url + "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return parse(response.text)


@pytest.fixture
async def harness(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        simulator.url,
        ["cn-hangzhou", "cn-shanghai"],
        dts={"page_size": 10},
    )
    async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
        port = await tg.start(serve_http, watcher.status, watcher.metrics, "127.0.0.1", 0)
        yield Harness(watcher, watcher.metrics, f"http://127.0.0.1:{port}")
        tg.cancel_scope.cancel()


async def test_metrics_after_a_scenario_show_what_happened(
    harness: Harness, simulator: Simulator
) -> None:
    sim = simulator
    sim.add_job({"id": "j1", "region": "cn-hangzhou", "name": "orders", "delay": 75})
    sim.add_job(
        {"id": "j2", "region": "cn-hangzhou", "name": "crm", "status": "Failed", "delay": 0}
    )
    for direction, delay in (("Forward", 3), ("Reverse", 9)):
        sim.add_job(
            {
                "id": "j3",
                "region": "cn-hangzhou",
                "name": "pay",
                "direction": direction,
                "delay": delay,
            }
        )
    for n in range(12):  # two pages of 10
        sim.add_job({"id": f"s{n:02d}", "region": "cn-shanghai", "name": f"s{n}", "delay": n})
    # one throttled request in cn-hangzhou: retried once, then read
    sim.inject({"kind": "throttle", "region": "cn-hangzhou", "count": 1, "retry_after_ms": 0})

    first = await harness.cycle()
    assert first.complete
    published = await harness.drain()
    assert published == len(first.events) > 0
    s = await harness.scrape()

    # the DTS API, read from the client's stats at scrape time
    assert (
        value(
            s,
            "dts_watcher_api_requests_total",
            account="default",
            region="cn-hangzhou",
            outcome="OK",
        )
        == 1
    )
    assert (
        value(
            s,
            "dts_watcher_api_requests_total",
            account="default",
            region="cn-hangzhou",
            outcome="Throttling.User",
        )
        == 1
    )
    assert (
        value(
            s,
            "dts_watcher_api_requests_total",
            account="default",
            region="cn-shanghai",
            outcome="OK",
        )
        == 2
    )
    assert value(s, "dts_watcher_api_retries_total", account="default", region="cn-hangzhou") == 1
    assert (
        value(s, "dts_watcher_api_retries_total", account="default", region="cn-shanghai") is None
    )
    assert value(s, "dts_watcher_api_pages_total", account="default", region="cn-hangzhou") == 1
    assert value(s, "dts_watcher_api_pages_total", account="default", region="cn-shanghai") == 2

    # the jobs, from the baseline
    assert series(s, "dts_watcher_jobs") == {
        frozenset({*SHARD, ("region", "cn-hangzhou"), ("status", "Synchronizing")}): 3,
        frozenset({*SHARD, ("region", "cn-hangzhou"), ("status", "Failed")}): 1,
        frozenset({*SHARD, ("region", "cn-shanghai"), ("status", "Synchronizing")}): 12,
    }
    delays = series(s, "dts_watcher_job_delay_seconds")
    assert len(delays) == 16
    assert (
        value(
            s,
            "dts_watcher_job_delay_seconds",
            job_id="j1",
            job_name="orders",
            region="cn-hangzhou",
            direction="Forward",
            account="default",
            job_type="sync",
        )
        == 75
    )
    assert (
        value(
            s,
            "dts_watcher_job_delay_seconds",
            job_id="j3",
            job_name="pay",
            region="cn-hangzhou",
            direction="Reverse",
            account="default",
            job_type="sync",
        )
        == 9
    )
    assert value(s, "dts_watcher_job_delay_series_dropped") == 0

    # events by kind and severity (hook), publishing (hook + publisher stats)
    assert value(s, "dts_watcher_events_total", kind="discovered", severity="info") == 16
    assert value(s, "dts_watcher_events_total", kind="status_changed", severity="critical") == 1
    assert (
        value(s, "dts_watcher_events_total", kind="delay_threshold_crossed", severity="warning")
        == 1
    )
    assert value(s, "dts_watcher_events_published_total") == published
    assert value(s, "dts_watcher_publish_duration_seconds_count") == 1
    assert value(s, "dts_watcher_outbox_depth") == 0
    assert value(s, "dts_watcher_nats_connected") == 1

    # cycles
    assert value(s, "dts_watcher_cycles_total", result="complete") == 1
    assert value(s, "dts_watcher_cycles_total", result="incomplete") == 0
    assert value(s, "dts_watcher_cycle_duration_seconds_count") == 1
    assert value(s, "dts_watcher_cycle_duration_seconds_sum") == pytest.approx(first.duration)
    last_complete = value(s, "dts_watcher_last_complete_cycle_timestamp_seconds")
    assert last_complete is not None and abs(last_complete - time.time()) < 60

    # cycle 2: cn-shanghai refuses (no permission), nothing is drained yet
    sim.inject({"kind": "forbidden", "region": "cn-shanghai", "count": -1})
    second = await harness.cycle()
    assert not second.complete
    s = await harness.scrape()
    assert (
        value(
            s,
            "dts_watcher_api_requests_total",
            account="default",
            region="cn-shanghai",
            outcome="Forbidden.RAM",
        )
        == 1
    )
    assert value(s, "dts_watcher_cycles_total", result="incomplete") == 1
    assert value(s, "dts_watcher_events_total", kind="cycle_incomplete", severity="warning") == 1
    assert value(s, "dts_watcher_outbox_depth") == len(second.events) == 1
    # the last complete cycle is still the first one
    assert value(s, "dts_watcher_last_complete_cycle_timestamp_seconds") == last_complete
    # the jobs of the unread region keep their last known state
    assert (
        value(
            s,
            "dts_watcher_jobs",
            account="default",
            job_type="sync",
            region="cn-shanghai",
            status="Synchronizing",
        )
        == 12
    )


async def test_a_scrape_before_any_cycle_is_valid_and_says_nothing_is_known(
    harness: Harness,
) -> None:
    s = await harness.scrape()
    assert series(s, "dts_watcher_jobs") == {}
    assert series(s, "dts_watcher_job_delay_seconds") == {}
    assert value(s, "dts_watcher_last_complete_cycle_timestamp_seconds") == 0
    assert value(s, "dts_watcher_nats_connected") == 0
    assert value(s, "dts_watcher_outbox_depth") == 0
    assert value(s, "dts_watcher_cycles_total", result="complete") == 0
