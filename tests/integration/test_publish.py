"""The publisher against a real nats-server: stream setup, acks, dedupe, order, auth."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest

from dts_sim.natsserver import NatsServer
from tests.support.watcher import read_stream
from watcher.events import Event
from watcher.publish import Publisher, PublishError
from watcher.settings import NatsSettings
from watcher.store import Store

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def events(n: int, jobs: int = 3) -> list[Event]:
    return [
        Event(
            kind="status_changed",
            severity="info",
            time=NOW,
            data={"job_id": f"j{i % jobs}", "seq": i},
            id=f"evt-{i}",
            region="cn-hangzhou",
            job_id=f"j{i % jobs}",
        )
        for i in range(n)
    ]


def publisher(tmp_path: Path, url: str, **settings: Any) -> Publisher:
    store = Store.open(tmp_path / "state.db")
    return Publisher(NatsSettings(url=url, connect_timeout=1, publish_timeout=2, **settings), store)


async def test_creates_the_stream_and_drains_in_order(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    pub = publisher(tmp_path, nats_server.url, subject_prefix="acme.dts", stream="ACME")
    pub.store.add_events(events(1500), "acme.dts")
    try:
        assert await pub.drain() == 1500
    finally:
        await pub.close()
    assert pub.store.outbox_depth() == 0
    nc = await nats.connect(nats_server.url)
    info = await nc.jetstream().stream_info("ACME")
    await nc.close()
    assert info.config.subjects == ["acme.dts.>"]
    assert info.config.duplicate_window >= 120
    received = await read_stream(nats_server.url, "ACME")
    for job in ("j0", "j1", "j2"):
        seqs = [e["data"]["seq"] for e in received if e["data"]["job_id"] == job]
        assert seqs == sorted(seqs) and len(seqs) == 500  # in order per job, none lost


async def test_a_republish_after_a_lost_ack_is_deduplicated(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    pub = publisher(tmp_path, nats_server.url)
    batch = events(20)
    pub.store.add_events(batch, "dts")
    try:
        await pub.drain()
        # As if the process died after publishing but before deleting from the outbox.
        pub.store.add_events(batch, "dts")
        assert pub.store.outbox_depth() == 20
        await pub.drain()
    finally:
        await pub.close()
    received = await read_stream(nats_server.url)
    assert [e["id"] for e in received] == [e.id for e in batch]


async def test_nats_down_keeps_events_then_delivers_them(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path)
    pub = publisher(tmp_path, server.url)
    pub.store.add_events(events(5), "dts")
    try:
        with pytest.raises(PublishError, match="cannot connect"):
            await pub.drain()
        assert pub.store.outbox_depth() == 5
        server.start()
        assert await pub.drain() == 5
    finally:
        await pub.close()
        server.close()


async def test_a_stream_lost_in_a_restart_is_recreated(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "nats")
    (tmp_path / "nats").mkdir()
    server.start()
    pub = publisher(tmp_path, server.url)
    try:
        pub.store.add_events(events(3), "dts")
        await pub.drain()
        server.stop()
        server.wipe()  # restarted without its data
        server.start()
        pub.store.add_events(events(6)[3:], "dts")
        for _ in range(50):  # the client reconnects on its own; retry as the service does
            try:
                await pub.drain()
                break
            except PublishError:
                import anyio

                await anyio.sleep(0.2)
        assert pub.store.outbox_depth() == 0
        assert [e["id"] for e in await read_stream(server.url)] == ["evt-3", "evt-4", "evt-5"]
    finally:
        await pub.close()
        server.close()


async def test_a_stream_that_does_not_capture_our_subjects_is_a_clear_error(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(name="DTS_EVENTS", subjects=["other.>"])
    await nc.close()
    pub = publisher(tmp_path, nats_server.url)
    pub.store.add_events(events(1), "dts")
    try:
        with pytest.raises(PublishError, match=r"does not capture dts\.>"):
            await pub.drain()
    finally:
        await pub.close()
    assert pub.store.outbox_depth() == 1


@pytest.mark.parametrize(
    ("server_args", "good", "bad"),
    [
        (
            ("--user", "watcher", "--pass", "s3cret-pw"),
            {"user": "watcher", "password": "s3cret-pw"},
            {"user": "watcher", "password": "wrong-pw"},
        ),
        (("--auth", "t0ken-value"), {"token": "t0ken-value"}, {"token": "wrong-token"}),
    ],
    ids=["user-password", "token"],
)
async def test_authentication(
    tmp_path: Path, server_args: tuple[str, ...], good: dict[str, str], bad: dict[str, str]
) -> None:
    with NatsServer(store_dir=tmp_path, extra_args=server_args) as server:
        ok = publisher(tmp_path, server.url, **good)
        ok.store.add_events(events(2), "dts")
        try:
            assert await ok.drain() == 2
        finally:
            await ok.close()
            ok.store.close()
        refused = publisher(tmp_path, server.url, **bad)
        refused.store.add_events(events(3)[2:], "dts")
        try:
            with pytest.raises(PublishError) as caught:
                await refused.drain()
        finally:
            await refused.close()
        secret = next(iter(bad.values())) if "token" in bad else bad["password"]
        assert secret not in str(caught.value)


async def test_an_event_leaves_the_outbox_only_once_jetstream_acknowledged_it(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    from nats.js.api import DiscardPolicy

    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    # A stream that refuses new messages past 3: JetStream answers the rest with an error.
    await js.add_stream(
        name="DTS_EVENTS", subjects=["dts.>"], max_msgs=3, discard=DiscardPolicy.NEW
    )
    pub = publisher(tmp_path, nats_server.url)
    pub.store.add_events(events(5), "dts")
    try:
        # JetStream's own words, in the error (and so in `/readyz` and `publish.deferred`)
        with pytest.raises(PublishError, match="maximum messages exceeded"):
            await pub.drain()
        assert [e.id for e in pub.store.pending()] == ["evt-3", "evt-4"]  # kept, in order
        await js.update_stream(
            name="DTS_EVENTS", subjects=["dts.>"], max_msgs=-1, discard=DiscardPolicy.NEW
        )
        assert await pub.drain() == 2
    finally:
        await pub.close()
        await nc.close()
    assert [e["id"] for e in await read_stream(nats_server.url)] == [f"evt-{i}" for i in range(5)]
