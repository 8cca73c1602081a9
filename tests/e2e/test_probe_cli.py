"""`dts-watcher check-config --probe` as a user runs it: verdicts and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer, free_port
from tests.support.cli import run_cli, watcher_env

pytestmark = pytest.mark.e2e


def test_probe_passes_with_exit_0_and_keeps_stdout_one_json_document(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "j1", "region": "cn-hangzhou"})
    env = watcher_env(tmp_path / "state", nats_server.url, simulator.url, ["cn-hangzhou"])
    result = run_cli("check-config", "--probe", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dts"]["regions"] == ["cn-hangzhou"]
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   DTS credentials",
        "ok   DTS cn-hangzhou",
        "ok   NATS",
    ], result.stderr
    assert "1 job visible" in lines[1]


def test_probe_failures_exit_1_saying_what_is_wrong(tmp_path: Path, simulator: Simulator) -> None:
    env = watcher_env(
        tmp_path / "state",
        f"nats://127.0.0.1:{free_port()}",
        simulator.url,
        ["cn-hangzhou"],
        ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI-typo",
    )
    result = run_cli("check-config", "--probe", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "FAIL DTS cn-hangzhou: the access key id is unknown (InvalidAccessKeyId.NotFound)"
        in result.stderr.splitlines()
    )
    assert "FAIL NATS: connection refused at 127.0.0.1:" in result.stderr
    assert "sim-access-key-secret" not in result.stdout + result.stderr


def test_without_probe_nothing_is_called(tmp_path: Path, simulator: Simulator) -> None:
    nowhere = "nats://nonexistent.invalid:4222"
    env = watcher_env(tmp_path / "state", nowhere, simulator.url, ["cn-hangzhou"])
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert simulator.requests == []


def test_an_invalid_config_still_exits_2_before_probing(tmp_path: Path) -> None:
    env = watcher_env(tmp_path / "state", "nats://127.0.0.1:1", "http://127.0.0.1:1", ["x-1"])
    env["DTS_WATCHER_POLL__INTERVAL"] = "0"
    result = run_cli("check-config", "--probe", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "DTS_WATCHER_POLL__INTERVAL" in result.stderr
