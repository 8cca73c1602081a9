"""Metrics without I/O: the hooks, the live collector on a status value, the series cap."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from watcher.events import watcher_event
from watcher.metrics import Metrics
from watcher.snapshot import JobState, Snapshot
from watcher.status import Status

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Live:
    """What the service's status reads live: the outbox depth and the NATS connection."""

    def __init__(self) -> None:
        self.depth = 0
        self.connected = True


def status(live: Live, baseline: Snapshot | None = None) -> Status:
    return Status(
        outbox_depth=lambda: live.depth,
        nats_connected=lambda: live.connected,
        baseline=baseline,
    )


def job(n: int, delay: int | None, region: str = "cn-hangzhou", status: str = "Synchronizing"):
    return JobState(region, f"dts{n:04d}", "Forward", f"job {n}", status, delay_seconds=delay)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_cycle_hook_counts_results_and_remembers_the_last_complete_one() -> None:
    m = Metrics()
    assert sample(m, "dts_watcher_last_complete_cycle_timestamp_seconds") == 0
    m.observe_cycle(1.5, True, NOW)
    m.observe_cycle(0.5, False, datetime(2026, 11, 28, 13, 0, tzinfo=UTC))
    assert sample(m, "dts_watcher_cycles_total", result="complete") == 1
    assert sample(m, "dts_watcher_cycles_total", result="incomplete") == 1
    assert sample(m, "dts_watcher_cycle_duration_seconds_count") == 2
    assert sample(m, "dts_watcher_cycle_duration_seconds_sum") == 2.0
    assert sample(m, "dts_watcher_cycle_duration_seconds_bucket", le="1.0") == 1
    # an incomplete cycle does not move the timestamp
    assert sample(m, "dts_watcher_last_complete_cycle_timestamp_seconds") == NOW.timestamp()


def test_event_hook_counts_by_kind_and_severity() -> None:
    m = Metrics()
    m.observe_events(
        [
            watcher_event("started", "info", NOW, {}),
            watcher_event("cycle_incomplete", "warning", NOW, {}),
            watcher_event("cycle_incomplete", "warning", NOW, {}),
        ]
    )
    assert sample(m, "dts_watcher_events_total", kind="started", severity="info") == 1
    assert sample(m, "dts_watcher_events_total", kind="cycle_incomplete", severity="warning") == 2
    assert sample(m, "dts_watcher_events_total", kind="started", severity="warning") is None


def test_publish_hook_ignores_empty_drains() -> None:
    m = Metrics()
    m.observe_publish(0, 0.001)
    m.observe_publish(40, 0.02)
    assert sample(m, "dts_watcher_publish_duration_seconds_count") == 1
    assert sample(m, "dts_watcher_publish_duration_seconds_sum") == 0.02


async def test_live_values_are_read_at_scrape_time() -> None:
    live = Live()
    w = status(live)
    m = Metrics(w)
    await m.refresh()
    assert sample(m, "dts_watcher_outbox_depth") == 0
    assert sample(m, "dts_watcher_nats_connected") == 1

    w.client.requests = Counter({("cn-hangzhou", "OK"): 3, ("cn-hangzhou", "Timeout"): 1})
    live.connected = False
    w.publishing.published = 7
    w.publishing.failures = 2
    live.depth = 5
    w.baseline = Snapshot.of([job(1, 10), job(2, None, status="Failed")])
    body, content_type = await m.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert (
        'dts_watcher_api_requests_total{account="default",outcome="Timeout",'
        'region="cn-hangzhou"} 1.0' in text
    )
    assert sample(m, "dts_watcher_nats_connected") == 0
    assert sample(m, "dts_watcher_events_published_total") == 7
    assert sample(m, "dts_watcher_publish_failures_total") == 2
    assert sample(m, "dts_watcher_outbox_depth") == 5
    assert (
        sample(
            m,
            "dts_watcher_jobs",
            account="default",
            job_type="sync",
            region="cn-hangzhou",
            status="Failed",
        )
        == 1
    )
    # only jobs that report a delay have a delay series
    assert "dts0002" not in text
    labels = {
        "job_id": "dts0001",
        "job_name": "job 1",
        "region": "cn-hangzhou",
        "account": "default",
    }
    labels["job_type"] = "sync"
    assert sample(m, "dts_watcher_job_delay_seconds", **labels, direction="Forward") == 10


async def test_delay_series_are_capped_keeping_the_largest_delays() -> None:
    w = status(Live(), Snapshot.of([job(n, delay=n * 10) for n in range(10)]))
    m = Metrics(w, max_job_series=3)
    text = (await m.render())[0].decode()
    kept = [line for line in text.splitlines() if line.startswith("dts_watcher_job_delay_seconds{")]
    assert len(kept) == 3
    assert all(any(f'job_id="dts{n:04d}"' in line for line in kept) for n in (7, 8, 9))
    assert sample(m, "dts_watcher_job_delay_series_dropped") == 7
    assert (
        sample(
            m,
            "dts_watcher_jobs",
            account="default",
            job_type="sync",
            region="cn-hangzhou",
            status="Synchronizing",
        )
        == 10
    )


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_cycle(1, True, NOW)
    assert sample(b, "dts_watcher_cycles_total", result="complete") == 0


def test_a_negative_series_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_job_series"):
        Metrics(max_job_series=-1)
