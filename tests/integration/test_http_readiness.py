"""`/readyz` flips with the watcher's real state: a complete cycle read, NATS connected.

A real watcher against the simulator and nats-server; NATS is stopped and started under
it, and readiness follows, saying why when it is not ready.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.cli import eventually
from tests.support.watcher import make_settings
from watcher.http import serve_http
from watcher.service import open_watcher

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_readyz_flips_with_a_complete_cycle_and_the_nats_connection(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "j1", "region": "cn-hangzhou"})
    settings = make_settings(tmp_path, nats_server.url, simulator.url, ["cn-hangzhou"])
    async with (
        open_watcher(settings) as watcher,
        anyio.create_task_group() as tg,
        httpx.AsyncClient() as http,
    ):
        port = await tg.start(serve_http, watcher.status, watcher.metrics, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"

        async def readyz() -> httpx.Response:
            return await http.get(base + "/readyz")

        # alive from the start, not ready: nothing read, nothing connected
        assert (await http.get(base + "/healthz")).status_code == 200
        r = await readyz()
        assert r.status_code == 503
        assert "no complete cycle yet" in r.text and "not connected to NATS" in r.text

        # DTS read completely, NATS still not connected (the publisher connects lazily)
        simulator.inject({"kind": "unavailable", "count": -1})
        assert not (await watcher.cycle()).complete
        assert "no complete cycle yet" in (await readyz()).text  # an incomplete one does not count
        simulator.clear_faults()
        assert (await watcher.cycle()).complete
        r = await readyz()
        assert r.status_code == 503
        assert "no complete cycle" not in r.text and "not connected to NATS" in r.text

        assert await watcher.flush(within=10)
        r = await readyz()
        assert (r.status_code, r.text) == (200, "ready\n")

        # NATS goes away: not ready, for that reason only; back: ready again
        nats_server.stop()
        await eventually(lambda: not watcher.publisher.connected, what="the disconnect")
        r = await readyz()
        assert r.status_code == 503
        assert r.text == "not ready:\n- not connected to NATS: events wait in the outbox\n"
        assert (await http.get(base + "/healthz")).status_code == 200  # alive all along

        nats_server.start()
        await eventually(lambda: watcher.publisher.connected, what="the reconnect")
        assert (await readyz()).status_code == 200
        tg.cancel_scope.cancel()
