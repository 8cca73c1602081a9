"""`once` and `run` as processes: real nats-server, the in-process DTS simulator.

What a user relies on: `once` exits 0 only when the fetch was complete and JetStream
acknowledged every event, keeps what it could not publish for the next run (and that run
publishes it exactly once), and says which region failed and why. `run` announces
itself, reports changes as they happen, logs JSON lines, and stops cleanly on SIGTERM or
SIGINT after saying so.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.cli import CliProcess, eventually, json_lines, run_cli, watcher_env
from tests.support.watcher import read_stream

pytestmark = pytest.mark.e2e

REGIONS = ["cn-hangzhou", "cn-shanghai"]


def add_jobs(sim: Simulator) -> set[str]:
    sim.add_job({"id": "dtse2e01", "region": "cn-hangzhou", "name": "orders", "delay": 3})
    sim.add_job({"id": "dtse2e02", "region": "cn-hangzhou", "name": "crm"})
    sim.add_job({"id": "dtse2e03", "region": "cn-shanghai", "name": "pay"})
    return {"dtse2e01", "dtse2e02", "dtse2e03"}


def job_events(stream: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (event["type"], event["data"]["job_id"])
        for event in stream
        if event["type"].startswith("dts.job.")
    ]


# --------------------------------------------------------------------------------------
# once
# --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_once_publishes_the_discovered_jobs(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    jobs = add_jobs(simulator)
    env = watcher_env(tmp_path / "state.sqlite3", nats_server.url, simulator.url, REGIONS)

    result = run_cli("once", "--publish-timeout", "20", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    stream = await read_stream(nats_server.url)
    assert sorted(job_events(stream)) == sorted(("dts.job.discovered", j) for j in jobs)
    for event in stream:
        assert event["_headers"]["Nats-Msg-Id"] == event["id"]


@pytest.mark.anyio
async def test_once_keeps_unpublished_events_for_the_next_run_which_sends_each_once(
    tmp_path: Path, simulator: Simulator
) -> None:
    jobs = add_jobs(simulator)
    (tmp_path / "nats").mkdir()
    server = NatsServer(store_dir=tmp_path / "nats")  # created, not started yet
    env = watcher_env(tmp_path / "state.sqlite3", server.url, simulator.url, REGIONS)
    try:
        blind = run_cli("once", "--publish-timeout", "2", env=env, cwd=tmp_path)
        assert blind.returncode == 1, blind.stderr
        assert "not acknowledged" in blind.stderr
        assert "outbox" in blind.stderr

        server.start()
        again = run_cli("once", "--publish-timeout", "20", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr

        stream = await read_stream(server.url)
        published = job_events(stream)
        assert sorted(published) == sorted(("dts.job.discovered", j) for j in jobs)
        ids = Counter(event["id"] for event in stream)
        assert all(n == 1 for n in ids.values()), ids
    finally:
        server.close()


@pytest.mark.anyio
async def test_once_names_the_region_that_failed_and_the_error_code(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    add_jobs(simulator)
    simulator.inject({"kind": "forbidden", "count": -1, "region": "cn-shanghai"})
    env = watcher_env(tmp_path / "state.sqlite3", nats_server.url, simulator.url, REGIONS)

    result = run_cli("once", "--publish-timeout", "20", env=env, cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    named = [line for line in result.stderr.splitlines() if "cn-shanghai" in line]
    assert any("Forbidden.RAM" in line for line in named), result.stderr
    # being blind to a region is said loudly on the stream too, and no job of it is
    # claimed to exist or to have gone
    stream = await read_stream(nats_server.url)
    incomplete = [e for e in stream if e["type"] == "dts.watcher.cycle_incomplete"]
    assert incomplete, [e["type"] for e in stream]
    assert "cn-shanghai" in incomplete[0]["data"]["regions"]
    assert not [e for e in stream if e["data"].get("region") == "cn-shanghai"]


# --------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_run_reports_changes_then_stops_cleanly_on_a_signal(
    tmp_path: Path,
    nats_server: NatsServer,
    simulator: Simulator,
    stop_signal: signal.Signals,
) -> None:
    jobs = add_jobs(simulator)
    env = watcher_env(
        tmp_path / "state.sqlite3",
        nats_server.url,
        simulator.url,
        REGIONS,
        DTS_WATCHER_POLL__INTERVAL="1",
        DTS_WATCHER_POLL__JITTER="0",
    )
    received: list[dict[str, Any]] = []

    async def collect(msg: Msg) -> None:
        received.append(json.loads(msg.data))

    def seen(kind: str, job_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in received
            if e["type"].endswith(f".{kind}")
            and (job_id is None or e["data"].get("job_id") == job_id)
        ]

    nc = await nats.connect(nats_server.url)
    try:
        await nc.subscribe("dts.>", cb=collect)
        await nc.flush()
        with CliProcess("run", env=env, cwd=tmp_path) as watcher:
            await eventually(
                lambda: (
                    bool(seen("started"))
                    and {e["data"]["job_id"] for e in seen("discovered")} == jobs
                ),
                what=lambda: f"started and discovered events\n{watcher.describe()}",
            )
            assert watcher.popen.poll() is None, watcher.describe()

            simulator.set_job("dtse2e02", status="Failed", error_message="DTS-31009: e2e boom")
            await eventually(
                lambda: bool(seen("status_changed", "dtse2e02")),
                what=lambda: f"status_changed for dtse2e02\n{watcher.describe()}",
            )
            changed = seen("status_changed", "dtse2e02")[0]["data"]
            assert (changed["previous_status"], changed["status"]) == ("Synchronizing", "Failed")
            assert changed["error_message"] == "DTS-31009: e2e boom"

            watcher.send_signal(stop_signal)
            assert await watcher.wait_async() == 0, watcher.describe()
            await eventually(lambda: bool(seen("stopped")), what="the stopped event")
            logs = watcher.stderr
    finally:
        await nc.close()

    # every event said once, and kept: the stream holds each exactly once, the stop included
    stored = await read_stream(nats_server.url)
    stored_ids = [e["id"] for e in stored]
    assert len(set(stored_ids)) == len(stored_ids)
    assert set(stored_ids) == {e["id"] for e in received}
    kinds = Counter(e["type"] for e in stored)
    assert kinds["dts.watcher.started"] == 1 and kinds["dts.watcher.stopped"] == 1
    assert kinds["dts.job.discovered"] == len(jobs)

    # logs: JSON lines with the stable keys, one line per emitted event
    lines = json_lines(logs)
    assert lines, "no log lines at all"
    for line in lines:
        assert {"timestamp", "level", "event"} <= line.keys(), line
    logged_ids = {line["event_id"] for line in lines if "event_id" in line}
    missing = [e["type"] for e in received if e["id"] not in logged_ids]
    assert not missing, f"events without a log line: {missing}"
