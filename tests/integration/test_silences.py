"""Silences in the real nats-server's key-value bucket: added, listed and ended by
operators (`SilenceBucket`), followed live by the service (`SilenceFollower`), and marking
the events of the running watcher (`silenced`), with a `reminder` once a silence ends
while its job is still failed.

Everything synchronizes on what is observable (the follower's view, events in the
stream), never on sleeps.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.js.errors
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.integration.test_tail_stream import Tail, create_stream, publish
from tests.support.cli import eventually
from tests.support.watcher import make_settings, read_stream
from watcher.events import Event
from watcher.service import Watcher, open_watcher
from watcher.settings import NatsSettings, Settings
from watcher.settings.alerting import Matcher
from watcher.silence_bucket import SilenceBucket, SilenceFollower
from watcher.silencing import Silence
from watcher.tail import Filters, TailOptions

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HZ = "cn-hangzhou"


def nats_settings(url: str, **fields: Any) -> NatsSettings:
    return NatsSettings(url=url, connect_timeout=2, **fields)


def silence(job_id: str, seconds: float, sid: str | None = None) -> Silence:
    now = datetime.now(UTC)
    return Silence(
        sid or str(uuid.uuid4()),
        Matcher(job_id=job_id),
        now,
        now + timedelta(seconds=seconds),
        "ops",
        "test",
    )


async def test_the_bucket_is_created_and_silences_are_added_listed_and_ended(
    nats_server: NatsServer,
) -> None:
    settings = nats_settings(nats_server.url, silence_bucket="ops_silences")
    async with SilenceBucket.open(settings, create=False) as bucket:
        assert await bucket.all() == []  # no bucket yet: nothing, and nothing created
    nc = await nats.connect(nats_server.url)
    try:
        with pytest.raises(nats.js.errors.BucketNotFoundError):
            await nc.jetstream().key_value("ops_silences")
    finally:
        await nc.close()
    one, two = silence("dtsA", 3600), silence("dtsB", 60)
    async with SilenceBucket.open(settings, create=True) as bucket:
        await bucket.add(one)
        await bucket.add(two)
    async with SilenceBucket.open(settings, create=False) as bucket:
        assert {s.id for s in await bucket.all()} == {one.id, two.id}
        now = datetime.now(UTC)
        ended = await bucket.expire(one.id, now)
        assert ended.end == now and ended.ended(now)
        again = await bucket.expire(one.id, now + timedelta(seconds=5))  # already over
        assert again.end == now
    async with SilenceBucket.open(settings, create=False) as bucket:
        stored = {s.id: s for s in await bucket.all()}
    assert stored[one.id].end == now and stored[one.id].author == "ops"
    assert stored[two.id] == two


async def test_the_follower_sees_silences_as_they_come_and_go(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = nats_settings(nats_server.url)
    follower = SilenceFollower(settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(follower.run)
        await eventually(lambda: follower.synced, what="the first read of the bucket")
        assert follower.silences == ()
        added = silence("dtsA", 3600)
        async with SilenceBucket.open(settings, create=True) as bucket:
            await bucket.add(added)
        await eventually(lambda: follower.silences == (added,), what="the new silence")
        async with SilenceBucket.open(settings, create=False) as bucket:
            ended = await bucket.expire(added.id, datetime.now(UTC))
        await eventually(lambda: follower.silences == (ended,), what="the silence ended")
        # Someone writes to the bucket by hand: skipped, counted, the rest kept.
        nc = await nats.connect(nats_server.url)
        try:
            kv = await nc.jetstream().key_value(settings.silence_bucket)
            await kv.put("garbage", b"{not a silence")
        finally:
            await nc.close()
        await eventually(lambda: follower.bad_entries == 1, what="the bad entry counted")
        assert follower.silences == (ended,)
        tg.cancel_scope.cancel()


async def test_the_follower_keeps_what_it_saw_while_nats_is_down(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    store.mkdir()
    server = NatsServer(store_dir=store)
    with server:
        settings = nats_settings(server.url)
        follower = SilenceFollower(settings)
        kept = silence("dtsA", 3600)
        async with SilenceBucket.open(settings, create=True) as bucket:
            await bucket.add(kept)
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower.run)
            await eventually(lambda: follower.silences == (kept,), what="the silence")
            server.stop()
            await eventually(lambda: follower.error is not None, what="the follower noticing")
            assert follower.silences == (kept,)  # what it saw still applies
            server.start()
            later = silence("dtsB", 3600)
            async with SilenceBucket.open(settings, create=False) as bucket:
                await bucket.add(later)
            await eventually(
                lambda: {s.id for s in follower.silences} == {kept.id, later.id},
                what="the bucket followed again after the restart",
            )
            assert follower.error is None
            tg.cancel_scope.cancel()


# ------------------------------------------------------------------- the running watcher


def watcher_settings(tmp_path: Path, nats_url: str, dts_url: str) -> Settings:
    return make_settings(
        tmp_path,
        nats_url,
        dts_url,
        [HZ],
        rules={"repeat_interval": 0},
        health={"heartbeat_interval": 0},
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Watcher]:
    async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
        stop = anyio.Event()
        tg.start_soon(lambda: watcher.run(stop, handle_signals=False))
        yield watcher
        stop.set()


def job_events(stream: list[dict[str, Any]], job_id: str) -> list[tuple[str, Any, Any]]:
    return [
        (e["type"].rsplit(".", 1)[1], e["data"].get("status"), e.get("silenced"))
        for e in stream
        if e["type"].startswith("dts.job.") and e["data"]["job_id"] == job_id
    ]


async def stream_has(url: str, job_id: str, wanted: tuple[str, Any, Any]) -> list[Any]:
    found: list[Any] = []

    async def seen() -> bool:
        nonlocal found
        try:
            found = job_events(await read_stream(url), job_id)
        except nats.js.errors.NotFoundError:  # no stream before the first publish
            return False
        return wanted in found

    await eventually(seen, what=lambda: f"{wanted} among {found}")
    return found


async def test_a_silence_added_while_the_watcher_runs_marks_the_next_event(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtsA", "region": HZ, "name": "orders"})
    simulator.add_job({"id": "dtsB", "region": HZ, "name": "crm"})
    settings = watcher_settings(tmp_path, nats_server.url, simulator.url)
    async with running(settings) as watcher:
        await stream_has(nats_server.url, "dtsA", ("discovered", "Synchronizing", None))
        added = silence("dtsA", 3600)
        async with SilenceBucket.open(settings.nats, create=True) as bucket:
            await bucket.add(added)
        await eventually(lambda: watcher.silencing().silences == (added,), what="the silence")
        simulator.set_job("dtsA", status="Failed", error_message="boom")
        simulator.set_job("dtsB", status="Failed", error_message="boom")
        await stream_has(nats_server.url, "dtsA", ("status_changed", "Failed", added.id))
        await stream_has(nats_server.url, "dtsB", ("status_changed", "Failed", None))
        # Ended at once while dtsA is still failed: reminded, and not silenced.
        async with SilenceBucket.open(settings.nats, create=False) as bucket:
            await bucket.expire(added.id, datetime.now(UTC))
        found = await stream_has(nats_server.url, "dtsA", ("reminder", "Failed", None))
    assert found == [
        ("discovered", "Synchronizing", None),
        ("status_changed", "Failed", added.id),
        ("reminder", "Failed", None),
    ]
    reminder = next(
        e for e in await read_stream(nats_server.url) if e["type"] == "dts.job.reminder"
    )
    assert reminder["data"]["reason"] == "silence_ended"
    assert reminder["data"]["condition"] == "Failed"
    assert reminder["severity"] == "critical"


async def test_a_silence_that_runs_out_while_the_job_is_failed_reminds_it(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtsA", "region": HZ, "name": "orders", "status": "Failed"})
    settings = watcher_settings(tmp_path, nats_server.url, simulator.url)
    short = silence("dtsA", 4)
    async with SilenceBucket.open(settings.nats, create=True) as bucket:
        await bucket.add(short)
    async with running(settings):
        found = await stream_has(nats_server.url, "dtsA", ("reminder", "Failed", None))
    assert found == [
        ("discovered", "Failed", short.id),
        ("status_changed", "Failed", short.id),
        ("reminder", "Failed", None),
    ]


async def test_tail_hides_silenced_events_unless_asked(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    await create_stream(nats_server.url)
    now = datetime.now(UTC)
    data = {
        "job_id": "dts1",
        "job_name": "one",
        "region": HZ,
        "direction": "Forward",
        "status": "Failed",
    }
    quiet = Event("status_changed", "critical", now, data, "e1", HZ, "dts1", silenced="s-1")
    loud = Event("status_changed", "critical", now, data, "e2", HZ, "dts1")
    tails = [
        Tail(tmp_path / "a", nats_server.url, TailOptions(count=1)),
        Tail(tmp_path / "b", nats_server.url, TailOptions(count=2, filters=Filters(silenced=True))),
    ]
    async with anyio.create_task_group() as tg:
        for one in tails:
            tg.start_soon(one.run)
            await one.ready.wait()
        await publish(nats_server.url, [quiet, loud])
    hidden, shown = tails
    assert len(hidden.lines) == 1 and "[silenced" not in hidden.lines[0]
    assert len(shown.lines) == 2 and shown.lines[0].endswith("[silenced: s-1]")
    assert isinstance(hidden.out, io.StringIO)
