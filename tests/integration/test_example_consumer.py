"""The example remediation consumer (examples/remediation_consumer.py) against events the
real watcher published: it acts on Failed and precheck_failed, acknowledges after acting,
gets a failed action again, and a restart of the durable consumer starts where it stopped."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from examples.remediation_consumer import Remediator, consume
from tests.support.watcher import make_settings
from watcher.service import open_watcher
from watcher.settings.alerting import Matcher
from watcher.silence_bucket import SilenceBucket
from watcher.silencing import Silence

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PRECHECK = {
    "status": "Failed",
    "items": [
        {"name": "CHECK_CONN_SRC", "status": "Success"},
        {
            "name": "CHECK_AUTH_SRC",
            "status": "Failed",
            "error_message": "Access denied for user 'dts'",
            "repair_method": "CHECK_ERROR_SRC_AUTH_REPAIR",
        },
        {
            "name": "CHECK_BINLOG_ROW_IMAGE",
            "status": "Failed",
            "error_message": "binlog_row_image is MINIMAL",
            "repair_method": "CHECK_ERROR_BINLOG_ROW_IMAGE_REPAIR",
        },
    ],
}


class FlakyOnce(Remediator):
    """Records what it says; its first restart attempt fails (the action is retried)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        super().__init__(self.lines.append)
        self.failures_left = 1

    async def on_failed(self, data: Mapping[str, Any]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("DTS API unreachable")
        await super().on_failed(data)


async def pending(url: str, durable: str) -> tuple[int, int]:
    """(events not yet delivered, delivered but not acknowledged) for the consumer."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info("DTS_EVENTS", durable)
        return info.num_pending, info.num_ack_pending
    finally:
        await nc.close()


async def test_the_example_consumer_acts_acknowledges_and_resumes(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    sim = simulator
    sim.add_job({"id": "j1", "region": "cn-hangzhou", "name": "orders"})
    sim.add_job(
        {
            "id": "j2",
            "region": "cn-hangzhou",
            "name": "crm",
            "status": "PrecheckFailed",
            "precheck": PRECHECK,
        }
    )
    sim.add_job({"id": "j3", "region": "cn-shanghai", "name": "pay"})
    settings = make_settings(tmp_path, nats_server.url, sim.url, ["cn-hangzhou", "cn-shanghai"])

    async with open_watcher(settings) as watcher:
        published = len((await watcher.cycle()).events)
        sim.set_job("j1", status="Failed", error_message="DTS-070211: Connect Source DB failed")
        published += len((await watcher.cycle()).events)
        assert await watcher.flush(within=10)

        remediator = FlakyOnce()
        kwargs: dict[str, Any] = {"idle": 0.5, "retry_delay": 0.05, "exit_when_idle": True}
        tally = await consume(nats_server.url, remediator, **kwargs)

        assert remediator.lines == [
            "PRECHECK cn-hangzhou/j2 (crm): CHECK_AUTH_SRC: Access denied for user 'dts' "
            "-> repair method CHECK_ERROR_SRC_AUTH_REPAIR",
            "PRECHECK cn-hangzhou/j2 (crm): CHECK_BINLOG_ROW_IMAGE: binlog_row_image is MINIMAL "
            "-> repair method CHECK_ERROR_BINLOG_ROW_IMAGE_REPAIR",
            remediator.lines[2],
            "FAILED cn-hangzhou/j1 (orders): DTS-070211: Connect Source DB failed -> restart it "
            "(dts:StartSynchronizationJob) once the cause is fixed, or page the owner",
        ]
        assert remediator.lines[2].startswith("RETRY ")
        assert remediator.lines[2].endswith("ConnectionError: DTS API unreachable")
        assert (tally.acted, tally.retried, tally.rejected) == (2, 1, 0)
        # every job event was acknowledged: acted upon or ignored (no watcher events here)
        assert tally.acted + tally.ignored == published
        assert await pending(nats_server.url, "remediation") == (0, 0)

        # a restart of the same durable consumer finds nothing new ...
        again = FlakyOnce()
        tally = await consume(nats_server.url, again, **kwargs)
        assert (tally.acted, tally.ignored, again.lines) == (0, 0, [])

        # ... and only what came since
        sim.set_job("j3", status="Failed", error_message="DTS-31009: disk full")
        await watcher.cycle()
        assert await watcher.flush(within=10)
        lines: list[str] = []
        tally = await consume(nats_server.url, Remediator(say=lines.append), **kwargs)
        assert lines == [
            "FAILED cn-shanghai/j3 (pay): DTS-31009: disk full -> restart it "
            "(dts:StartSynchronizationJob) once the cause is fixed, or page the owner"
        ]
        assert tally.acted == 1


async def test_a_message_that_is_not_an_event_is_terminated_not_redelivered(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DTS_EVENTS", subjects=["dts.>"])
        await js.publish("dts.job.cn-hangzhou.x.status_changed", b"not json")
    finally:
        await nc.close()
    kwargs: dict[str, Any] = {"idle": 0.5, "exit_when_idle": True}
    tally = await consume(nats_server.url, Remediator(say=lambda _: None), **kwargs)
    assert tally.rejected == 1
    assert await pending(nats_server.url, "remediation") == (0, 0)


async def test_the_example_consumer_skips_silenced_events_and_acts_on_the_reminder(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "j1", "region": "cn-hangzhou", "name": "orders"})
    settings = make_settings(tmp_path, nats_server.url, simulator.url, ["cn-hangzhou"])
    now = datetime.now(UTC)
    maintenance = Silence("s-7", Matcher(job_id="j1"), now, now + timedelta(hours=1), "ops")
    async with SilenceBucket.open(settings.nats, create=True) as bucket:
        await bucket.add(maintenance)
    kwargs: dict[str, Any] = {"idle": 0.5, "exit_when_idle": True}
    async with open_watcher(settings) as watcher:
        assert await watcher.read_silences(within=10)
        await watcher.cycle()
        simulator.set_job("j1", status="Failed", error_message="DTS-070211: during the upgrade")
        await watcher.cycle()
        assert await watcher.flush(within=10)
        lines: list[str] = []
        tally = await consume(nats_server.url, Remediator(say=lines.append), **kwargs)
        assert (lines, tally.silenced, tally.acted) == ([], 2, 0)  # discovered, status_changed

        async with SilenceBucket.open(settings.nats, create=False) as bucket:
            await bucket.expire("s-7", datetime.now(UTC))
        assert await watcher.read_silences(within=10)
        await watcher.cycle()  # the silence is over, j1 still failed: a reminder
        assert await watcher.flush(within=10)
        tally = await consume(nats_server.url, Remediator(say=lines.append), **kwargs)
    assert len(lines) == 1 and lines[0].startswith("STILL FAILED cn-hangzhou/j1 (orders) since ")
    assert lines[0].endswith(
        "(silence_ended) -> restart it once the cause is fixed, or page the owner"
    )
    assert (tally.acted, tally.silenced) == (1, 0)
