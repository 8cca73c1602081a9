"""The service with its HTTP endpoint on: readiness and metrics follow the real loop."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer, free_port
from tests.support.watcher import make_settings
from watcher.service import open_watcher

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def metric(text: str, name: str) -> float:
    """The value of one sample line, e.g. 'dts_watcher_events_total{kind="discovered",...}'."""
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name or (key.startswith(name) and key[len(name)] in "{,}"):
            return float(value)
    raise AssertionError(f"{name} not in the scrape")


async def test_the_running_service_serves_readiness_and_metrics(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer
) -> None:
    simulator.add_job({"id": "j1", "region": "cn-hangzhou", "delay": 120})
    simulator.add_job({"id": "j2", "region": "cn-hangzhou"})
    port = free_port()
    settings = make_settings(
        tmp_path,
        nats_server.url,
        simulator.url,
        ["cn-hangzhou"],
        http={"port": port, "host": "127.0.0.1"},
        health={"heartbeat_interval": 0},
    )
    base = f"http://127.0.0.1:{port}"
    async with (
        open_watcher(settings) as watcher,
        httpx.AsyncClient(base_url=base) as http,
        anyio.create_task_group() as tg,
    ):
        stop = anyio.Event()
        tg.start_soon(lambda: watcher.run(stop, handle_signals=False))
        with anyio.fail_after(20):
            while (await _get(http, "/readyz")) != 200:  # noqa: ASYNC110 - polling an endpoint
                await anyio.sleep(0.05)
            while watcher.store.outbox_depth() or not watcher.metrics.publish_duration:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        scrape = (await http.get("/metrics")).text
        assert metric(scrape, 'dts_watcher_events_total{kind="discovered",severity="info"}') == 2
        assert (
            metric(
                scrape,
                'dts_watcher_job_delay_seconds{account="default",direction="Forward",job_id="j1"',
            )
            == 120
        )
        assert metric(scrape, "dts_watcher_cycles_total") >= 1
        assert "dts_watcher_publish_duration_seconds_count" in scrape
        assert (await http.get("/healthz")).status_code == 200

        nats_server.stop()  # NATS gone: not ready, and the body says why
        with anyio.fail_after(20):
            while (await _get(http, "/readyz")) != 503:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        body = (await http.get("/readyz")).text
        assert "NATS" in body
        stop.set()


async def _get(http: httpx.AsyncClient, path: str) -> int:
    try:
        return (await http.get(path)).status_code
    except httpx.TransportError:
        return 0
