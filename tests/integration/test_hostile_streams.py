"""Streams that look fine and are not (issue 12, item 12): the real nats-server with a
stream the watcher did not create. `check-config --probe` says what is wrong with it, the
publisher refuses to pour events into it with JetStream's own reason, and a stream that
does capture everything through several filters is accepted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.watcher import make_settings, read_stream
from watcher.errors import PublishError
from watcher.events import watcher_event
from watcher.probe import probe_nats
from watcher.publish import Publisher
from watcher.status import Status
from watcher.store import Store

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HOSTILE: list[tuple[str, dict[str, Any], int, str]] = [
    # (id, stream config, messages published into it first, what the probe must say)
    ("no-ack", {"no_ack": True}, 0, "acknowledges nothing (no_ack)"),
    ("discard-new", {"max_msgs": 5, "discard": DiscardPolicy.NEW}, 0, "discards new messages"),
    ("discard-new-full", {"max_msgs": 2, "discard": DiscardPolicy.NEW}, 2, "is full (max_msgs 2"),
    ("tiny-messages", {"max_msg_size": 1000}, 0, "at most 1000 bytes (max_msg_size)"),
    ("job-events-only", {"subjects": ["dts.job.>"]}, 0, "does not capture dts.watcher."),
]


async def make_stream(url: str, config: dict[str, Any], fill: int = 0) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="DTS_EVENTS", **{"subjects": ["dts.>"], **config}))
        for i in range(fill):
            await js.publish(f"dts.watcher.filler{i}", b"{}")
    finally:
        await nc.close()


def one_event() -> Any:
    return watcher_event("started", "info", datetime.now(UTC), {"version": "test"})


@pytest.mark.parametrize(("config", "fill", "said"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])  # fmt: skip
async def test_the_probe_says_what_is_wrong_with_the_stream(
    tmp_path: Path,
    nats_server: NatsServer,
    simulator: Simulator,
    config: dict[str, Any],
    fill: int,
    said: str,
) -> None:
    await make_stream(nats_server.url, config, fill)
    settings = make_settings(tmp_path, nats_server.url, simulator.url, ["cn-hangzhou"])
    verdict = await probe_nats(settings)
    assert not verdict.ok, verdict
    assert said in verdict.message, verdict.message


@pytest.mark.parametrize(
    ("config", "fill", "reason"),
    [
        ({"no_ack": True}, 0, "no_ack"),
        ({"max_msgs": 2, "discard": DiscardPolicy.NEW}, 2, "is full"),
        ({"max_msg_size": 1000}, 0, "max_msg_size"),
        ({"subjects": ["dts.job.>"]}, 0, "does not capture"),
    ],
    ids=["no-ack", "discard-new-full", "tiny-messages", "job-events-only"],
)
async def test_the_publisher_says_why_and_keeps_the_events(
    tmp_path: Path, nats_server: NatsServer, config: dict[str, Any], fill: int, reason: str
) -> None:
    await make_stream(nats_server.url, config, fill)
    settings = make_settings(tmp_path, nats_server.url, "http://127.0.0.1:1", ["cn-hangzhou"])
    with Store.open(tmp_path / "outbox.db") as store:
        store.add_events([one_event()], "dts")
        publisher = Publisher(settings.nats, store)
        try:
            with pytest.raises(PublishError, match=reason):
                await publisher.timed_drain()
            status = Status(nats_connected=lambda: True, publish_problem=lambda: publisher.problem)
            (said,) = [r for r in status.readiness() if "JetStream does not take them" in r]
            assert reason in said  # /readyz gives the stream's problem, not "NATS"
        finally:
            await publisher.close()
        assert store.outbox_depth() == 1


@pytest.mark.parametrize(
    "subjects",
    [["dts.job.>", "dts.watcher.>"], ["dts.job.*.*.*", "dts.watcher.*"], ["dts.*.>"]],
    ids=["two-filters", "wildcards", "one-wildcard"],
)
async def test_a_stream_that_captures_everything_through_several_filters_is_used(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator, subjects: list[str]
) -> None:
    await make_stream(nats_server.url, {"subjects": subjects})
    settings = make_settings(tmp_path, nats_server.url, simulator.url, ["cn-hangzhou"])
    verdict = await probe_nats(settings)
    assert verdict.ok, verdict
    with Store.open(tmp_path / "outbox.db") as store:
        store.add_events([one_event()], "dts")
        publisher = Publisher(settings.nats, store)
        try:
            assert await publisher.drain() == 1
        finally:
            await publisher.close()
    assert [e["type"] for e in await read_stream(nats_server.url)] == ["dts.watcher.started"]
