"""`poll.emit = "page"`: events go out as each page of the listing is judged.

The scripted scenario of test_pipeline runs in both modes and must give the very same
stream; these tests cover what only page by page does: an event reaching a subscriber
while the rest of the listing is still being read, and a listing that fails part way.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import anyio
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.watcher import make_settings, read_stream
from watcher.dts.client import PageHook
from watcher.service import open_watcher
from watcher.snapshot import Snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
HZ = "cn-hangzhou"


def forty_jobs(sim: Simulator) -> None:
    """Two pages in cn-hangzhou: hz00..hz29 on page 1, hz30..hz39 on page 2."""
    for i in range(40):
        sim.add_job({"id": f"hz{i:02}", "region": HZ, "name": f"hz {i}"})


def kinds(stream: list[dict[str, Any]], job_id: str) -> list[str]:
    return [e["type"] for e in stream if e.get("subject") == job_id]


async def test_an_event_reaches_subscribers_while_the_listing_is_still_read(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator, nats_client: Any
) -> None:
    forty_jobs(simulator)
    settings = make_settings(tmp_path, nats_server.url, simulator.url, [HZ], poll={"emit": "page"})
    received: list[tuple[str, bool]] = []  # (subject, was the cycle still running)
    cycle_done = anyio.Event()
    got = anyio.Event()

    async def on_message(msg: Any) -> None:
        received.append((msg.subject, not cycle_done.is_set()))
        got.set()

    await nats_client.subscribe("dts.job.cn-hangzhou.hz00.status_changed", cb=on_message)
    async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
        tg.start_soon(watcher.publisher.run)
        assert (await watcher.cycle()).complete
        simulator.set_job("hz00", status="Failed", error_message="boom")
        # Page 2 answers only after a while: page 1's event must not wait for it.
        simulator.inject({"kind": "slow", "region": HZ, "page": 2, "seconds": 3.0})

        async def run_cycle() -> None:
            result = await watcher.cycle()
            assert result.complete and [e.kind for e in result.events] == ["status_changed"]
            cycle_done.set()

        tg.start_soon(run_cycle)
        with anyio.fail_after(30):
            await got.wait()
            await cycle_done.wait()
        assert await watcher.flush(within=10)
        tg.cancel_scope.cancel()
    assert received == [("dts.job.cn-hangzhou.hz00.status_changed", True)]
    stream = await read_stream(nats_server.url)
    assert kinds(stream, "hz00") == ["dts.job.discovered", "dts.job.status_changed"]
    assert len([e for e in stream if e["type"] == "dts.job.discovered"]) == 40


async def test_a_listing_that_fails_part_way_says_what_its_pages_showed_and_no_more(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    forty_jobs(simulator)
    settings = make_settings(
        tmp_path,
        nats_server.url,
        simulator.url,
        [HZ],
        poll={"emit": "page"},
        dts={"max_attempts": 2},
        rules={"removed_after": 1},
    )
    async with open_watcher(settings) as watcher:
        assert (await watcher.cycle()).complete
        known = dict(watcher.baseline.jobs)  # type: ignore[union-attr]
        simulator.set_job("hz00", status="Failed", error_message="boom")  # page 1
        simulator.set_job("hz35", status="Failed", error_message="boom")  # page 2
        simulator.inject({"kind": "internal", "region": HZ, "page": 2, "count": -1})
        blind = await watcher.cycle()
        assert not blind.complete
        # Page 1 was read, consistent: its news went out. Page 2 failed: nothing about
        # its jobs, and above all no "removed" (the listing proves no absence).
        assert [(e.kind, e.job_id) for e in blind.events if e.is_job_event] == [
            ("status_changed", "hz00")
        ]
        after = dict(watcher.baseline.jobs)  # type: ignore[union-attr]
        assert after.keys() == known.keys()
        assert after[next(k for k in known if k.job_id == "hz35")].status == "Synchronizing"
        simulator.clear_faults()
        healed = await watcher.cycle()
        assert healed.complete
        assert [(e.kind, e.job_id) for e in healed.events if e.is_job_event] == [
            ("status_changed", "hz35")
        ]
        assert await watcher.flush(within=10)
    stream = await read_stream(nats_server.url)
    assert kinds(stream, "hz00") == ["dts.job.discovered", "dts.job.status_changed"]
    assert kinds(stream, "hz35") == ["dts.job.discovered", "dts.job.status_changed"]
    assert not [e for e in stream if e["type"] == "dts.job.removed"]


async def test_pages_still_waiting_when_the_listing_ends_are_all_judged(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    """The last pages can arrive together with the end of the listing (a fast listing,
    a busy event loop): they are judged like the others, and the cycle ends cleanly."""
    forty_jobs(simulator)
    settings = make_settings(tmp_path, nats_server.url, simulator.url, [HZ], poll={"emit": "page"})
    async with open_watcher(settings) as watcher:
        read = await watcher.client.fetch()
        pages = [
            tuple(j for j in read if j.job_id < "hz30"),
            tuple(j for j in read if j.job_id >= "hz30"),
        ]

        async def all_at_once(
            on_page: PageHook | None = None,
            deadline: float | None = None,
            only: Collection[str] | None = None,
        ) -> Snapshot:
            assert on_page is not None
            for page in pages:  # without a pause: the judge sees them after the end
                on_page(HZ, page)
            return read

        watcher.client.fetch = all_at_once  # type: ignore[method-assign]
        result = await watcher.cycle()
        assert await watcher.flush(within=10)
    assert result.complete
    assert sorted(e.job_id for e in result.events) == sorted(j.job_id for j in read)
    assert {e.kind for e in result.events} == {"discovered"}
