"""`dts-watcher tail` with the new options, as a user runs it (replaying a real stream)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest

from dts_sim.natsserver import NatsServer
from tests.support.cli import cli_env, run_cli
from watcher.events import Event

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def event(n: int, kind: str, severity: Any, region: str) -> Event:
    data = {
        "job_id": f"dts{n}",
        "job_name": f"job {n}",
        "region": region,
        "direction": "Forward",
        "status": "Failed",
        "previous_status": "Synchronizing",
        "error_message": "DTS-070211",
    }
    now = datetime.now(UTC)
    return Event(kind, severity, now, data, id=f"e{n}", region=region, job_id=f"dts{n}")


@pytest.fixture
async def stream(nats_server: NatsServer) -> str:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DTS_EVENTS", subjects=["dts.>"])
        for e in (
            event(1, "discovered", "info", "cn-hangzhou"),
            event(2, "status_changed", "critical", "cn-hangzhou"),
            event(3, "status_changed", "critical", "cn-shanghai"),
        ):
            await js.publish(e.nats_subject("dts"), e.to_json(), headers=e.headers())
    finally:
        await nc.close()
    return nats_server.url


async def test_since_replays_filtered_events_without_colour_when_piped(
    tmp_path: Path, stream: str
) -> None:
    env = cli_env({"DTS_WATCHER_NATS__URL": stream})
    args = ("tail", "--since", "1h", "--min-severity", "critical", "--count", "2")
    result = run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[3] for line in lines] == ["cn-hangzhou/dts2", "cn-shanghai/dts3"]
    assert "\x1b[" not in result.stdout

    one = run_cli(
        "tail",
        "--since",
        "1h",
        "--region",
        "cn-shanghai",
        "--count",
        "1",
        "--color",
        env=env,
        cwd=tmp_path,
    )
    assert one.returncode == 0, one.stderr
    assert "\x1b[1;31mcritical status_changed\x1b[0m" in one.stdout
    assert "cn-shanghai/dts3" in one.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "--since 'yesterday'"),
        (("--region", "cn-hangzhou", "--kind", "started"), "job events only"),
        (("--kind", "exploded"), "invalid choice"),
    ],
)
def test_unusable_tail_options_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli("tail", *args, env=cli_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
