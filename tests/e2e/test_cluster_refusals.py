"""Cluster mode in surroundings it cannot work in, or should not: `dts-watcher run` says
so, naming the setting (an error: exit 2 and one line; a warning: a log line).

- a NATS without JetStream: an error;
- a second replica under a member name in use: an error, the first goes on;
- one replica of the buckets or the events stream on a NATS cluster, a duplicate window
  shorter than a lease TTL and a cycle: warnings, each naming its setting.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from dts_sim import Simulator
from dts_sim.natsserver import NatsCluster, NatsServer
from tests.support.cli import CliProcess, run_cli, watcher_env
from tests.support.cluster import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.wall_clock]

REGIONS = ["cn-hangzhou", "cn-shanghai"]


def cluster_env(tmp_path: Path, nats_url: str, sim: Simulator, **extra: str) -> dict[str, str]:
    values = {
        "DTS_WATCHER_CLUSTER__ENABLED": "true",
        "DTS_WATCHER_CLUSTER__LEASE_TTL": "3",
        "DTS_WATCHER_POLL__INTERVAL": "1",
        "DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL": "0",
        "DTS_WATCHER_LOG__FORMAT": "json",
        **extra,
    }
    return watcher_env(tmp_path / "state.sqlite3", nats_url, sim.url, REGIONS, **values)


def test_cluster_mode_without_jetstream_is_refused_naming_the_setting(
    tmp_path: Path, simulator: Simulator
) -> None:
    (tmp_path / "nats").mkdir()
    with NatsServer(store_dir=tmp_path / "nats", jetstream=False) as server:
        env = cluster_env(tmp_path, server.url, simulator, DTS_WATCHER_CLUSTER__MEMBER="a")
        done = run_cli("run", env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the log lines (on stderr too)
    assert line.startswith("dts-watcher: ")
    assert "DTS_WATCHER_CLUSTER__ENABLED" in line and "JetStream" in line
    assert "Traceback" not in done.stderr


def test_a_second_replica_under_a_name_in_use_is_refused(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer
) -> None:
    env = cluster_env(tmp_path, nats_server.url, simulator, DTS_WATCHER_CLUSTER__MEMBER="pod-0")
    with CliProcess("run", env=env, cwd=tmp_path) as first:
        first.wait_for_line(lambda line: "cluster.ready" in line, stream="stderr")
        second = run_cli("run", env=env, cwd=tmp_path, timeout=60)
        assert second.returncode == 2, second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith("dts-watcher: ")
        assert "DTS_WATCHER_CLUSTER__MEMBER" in line and "pod-0" in line
        assert first.popen.poll() is None  # the first one goes on
        first.send_signal(signal.SIGTERM)
        assert first.wait() == 0, first.describe()


async def test_one_replica_on_a_cluster_and_a_short_window_are_warned_about(
    tmp_path: Path, simulator: Simulator, nats_cluster: NatsCluster
) -> None:
    nc = await nats.connect(servers=nats_cluster.url_list)
    try:  # an events stream made by someone else: one replica, two minutes of dedupe
        js = nc.jetstream(timeout=5)
        config = StreamConfig(name="DTS_EVENTS", subjects=["dts.>"], duplicate_window=120)
        await eventually(lambda: js.add_stream(config))  # a meta leader just elected
    finally:
        await nc.close()
    env = cluster_env(
        tmp_path,
        nats_cluster.urls,
        simulator,
        DTS_WATCHER_CLUSTER__MEMBER="a",
        DTS_WATCHER_CLUSTER__REPLICAS="1",
        DTS_WATCHER_CLUSTER__LEASE_TTL="100",
        DTS_WATCHER_POLL__INTERVAL="30",
    )
    with CliProcess("run", env=env, cwd=tmp_path) as replica:
        replica.wait_for_line(lambda line: "cluster.ready" in line, stream="stderr")
        lines = [json.loads(line) for line in replica.stderr_lines if line.startswith("{")]
    said = [line["problem"] for line in lines if line.get("event") == "cluster.surroundings"]
    assert len(said) == 4, said
    leases, state, stream, window = said
    assert "dts_watcher_leases" in leases and "DTS_WATCHER_CLUSTER__REPLICAS" in leases
    assert "dts_watcher_state" in state and "DTS_WATCHER_CLUSTER__REPLICAS" in state
    assert "DTS_EVENTS" in stream and "DTS_WATCHER_NATS__STREAM_REPLICAS" in stream
    assert "DTS_WATCHER_NATS__DUPLICATE_WINDOW" in window and "130" in window


def test_once_is_refused_in_cluster_mode(tmp_path: Path, simulator: Simulator) -> None:
    """`once` reads every region alone: with several replicas sharing them, it would
    judge shards others hold from a state that is not theirs."""
    env = cluster_env(tmp_path, "nats://127.0.0.1:1", simulator, DTS_WATCHER_CLUSTER__MEMBER="a")
    done = run_cli("once", env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "DTS_WATCHER_CLUSTER__ENABLED" in line and "`run`" in line
