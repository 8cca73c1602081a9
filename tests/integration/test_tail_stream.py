"""`tail` against a real nats-server: live filtering, and `--since` replaying from the stream
before carrying on live."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from dts_sim.natsserver import NatsServer
from tests.support.cli import eventually
from tests.support.watcher import make_settings
from watcher.events import Event
from watcher.tail import Filters, TailOptions, tail

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def event(n: int, kind: str, severity: Any, region: str = "cn-hangzhou") -> Event:
    data = {
        "job_id": f"dts{n}",
        "job_name": f"job {n}",
        "region": region,
        "direction": "Forward",
        "status": "Synchronizing",
    }
    return Event(kind, severity, NOW, data, id=f"e{n}", region=region, job_id=f"dts{n}")


class Tail:
    """`tail` run in-process, its output collected."""

    def __init__(self, tmp_path: Path, url: str, options: TailOptions) -> None:
        self.settings = make_settings(tmp_path, url, "http://127.0.0.1:1", ["cn-hangzhou"])
        self.options = options
        self.out = io.StringIO()
        self.ready = anyio.Event()
        self.code: int | None = None

    @property
    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    async def run(self) -> None:
        self.code = await tail(
            self.settings, self.options, out=self.out, ready=self.ready.set, handle_signals=False
        )
        self.ready.set()


async def publish(url: str, events: list[Event], js: bool = True) -> list[int]:
    """Publish to the stream (or core NATS); the stream sequence of each."""
    nc = await nats.connect(url)
    try:
        seqs = []
        for e in events:
            if js:
                ack = await nc.jetstream().publish(
                    e.nats_subject("dts"), e.to_json(), headers=e.headers()
                )
                seqs.append(ack.seq)
            else:
                await nc.publish(e.nats_subject("dts"), e.to_json(), headers=e.headers())
        await nc.flush()
        return seqs
    finally:
        await nc.close()


async def create_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name="DTS_EVENTS", subjects=["dts.>"])
    finally:
        await nc.close()


async def test_live_tail_prints_only_what_the_filters_let_through(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    filters = Filters(regions=("cn-hangzhou",), min_severity="warning")
    t = Tail(tmp_path, nats_server.url, TailOptions(filters=filters, count=2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(t.run)
        await t.ready.wait()
        await publish(
            nats_server.url,
            [
                event(1, "discovered", "info"),  # too mild
                event(2, "status_changed", "critical", region="cn-shanghai"),  # elsewhere
                event(3, "status_changed", "critical"),
                event(4, "delay_threshold_crossed", "warning"),
            ],
            js=False,
        )
    assert t.code == 0
    assert [line.split()[2] for line in t.lines] == ["status_changed", "delay_threshold_crossed"]
    assert "cn-hangzhou/dts3" in t.lines[0] and "cn-hangzhou/dts4" in t.lines[1]


async def test_since_replays_from_the_stream_then_goes_on_live(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    await create_stream(nats_server.url)
    seqs = await publish(
        nats_server.url,
        [
            event(1, "status_changed", "critical"),  # before --since: not replayed
            event(2, "status_changed", "critical"),
            event(3, "discovered", "info"),  # filtered out
            event(4, "precheck_failed", "critical"),
        ],
    )
    nc = await nats.connect(nats_server.url)
    try:
        since = (await nc.jetstream().get_msg("DTS_EVENTS", seqs[1])).time
    finally:
        await nc.close()
    assert since is not None
    options = TailOptions(filters=Filters(min_severity="critical"), since=since, count=3)
    t = Tail(tmp_path, nats_server.url, options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(t.run)
        await t.ready.wait()
        await eventually(lambda: len(t.lines) == 2, within=10, what="the replay")
        await publish(nats_server.url, [event(5, "init_failed", "critical")])
    assert t.code == 0
    assert [line.split()[3] for line in t.lines] == [
        "cn-hangzhou/dts2",
        "cn-hangzhou/dts4",
        "cn-hangzhou/dts5",
    ]


async def test_since_without_a_stream_says_so(
    tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    t = Tail(tmp_path, nats_server.url, TailOptions(since=NOW))
    with anyio.fail_after(10):
        await t.run()
    assert t.code == 1
    assert "stream DTS_EVENTS not found" in capsys.readouterr().err
