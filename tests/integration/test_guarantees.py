"""The promises, under every fault we can produce here.

Each test drives the real watcher against the simulator and a real nats-server, breaks
something (NATS, DTS, the clock, the process itself), and then checks what a consumer
would see in the stream: every change exactly once, in order per job, nothing invented.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Simulator
from dts_sim.natsserver import NatsServer
from tests.support.watcher import (
    assert_no_duplicates,
    job_events,
    make_settings,
    read_stream,
    wait_until,
)
from watcher.faults import ENV as CRASH_ENV
from watcher.service import open_watcher

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
REGIONS = ["cn-hangzhou", "cn-shanghai"]


def populate(sim: Simulator) -> None:
    sim.add_job({"id": "j1", "region": "cn-hangzhou", "name": "orders"})
    sim.add_job({"id": "j2", "region": "cn-shanghai", "name": "crm", "delay": 2})


# -- NATS faults ---------------------------------------------------------------------------


async def test_nats_down_before_and_during_cycles_loses_nothing(
    tmp_path: Path, simulator: Simulator
) -> None:
    populate(simulator)
    (tmp_path / "nats").mkdir()
    server = NatsServer(store_dir=tmp_path / "nats")  # not started: NATS is down
    settings = make_settings(
        tmp_path, server.url, simulator.url, REGIONS, health={"heartbeat_interval": 0}
    )
    try:
        async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
            stop = anyio.Event()
            tg.start_soon(lambda: watcher.run(stop, handle_signals=False))
            await wait_until(lambda: watcher.status.cycles >= 2)
            simulator.set_job("j1", status="Failed", error_message="boom")
            await wait_until(lambda: watcher.status.events.get("dts.job.status_changed", 0) >= 1)
            assert watcher.store.outbox_depth() >= 4  # started, 2 discovered, status_changed
            server.start()  # NATS comes back: the outbox drains
            await wait_until(lambda: watcher.store.outbox_depth() == 0)

            server.stop()  # and goes away again, mid-service
            simulator.set_job("j1", status="Synchronizing", error_message="")
            simulator.set_job("j2", delay=500)
            await wait_until(
                lambda: watcher.status.events.get("dts.job.delay_threshold_crossed", 0) >= 1
            )
            cycles = watcher.status.cycles
            await wait_until(lambda: watcher.status.cycles >= cycles + 2)  # still polling
            assert watcher.store.outbox_depth() >= 2
            server.start()
            await wait_until(lambda: watcher.store.outbox_depth() == 0)
            stop.set()
        stream = await read_stream(server.url)
    finally:
        server.close()
    assert_no_duplicates(stream)
    assert job_events(stream) == {
        "j1/Forward": [
            ("discovered", "Synchronizing"),
            ("status_changed", "Failed"),
            ("status_changed", "Synchronizing"),
        ],
        "j2/Forward": [("discovered", "Synchronizing"), ("delay_threshold_crossed", "critical")],
    }
    assert [e["type"] for e in stream if e["type"].startswith("dts.watcher.")] == [
        "dts.watcher.started",
        "dts.watcher.stopped",
    ]


async def test_a_nats_restart_that_lost_the_stream_is_repaired(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer
) -> None:
    populate(simulator)
    settings = make_settings(
        tmp_path, nats_server.url, simulator.url, REGIONS, health={"heartbeat_interval": 0}
    )
    async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
        stop = anyio.Event()
        tg.start_soon(lambda: watcher.run(stop, handle_signals=False))
        await wait_until(lambda: watcher.status.cycles >= 1 and watcher.store.outbox_depth() == 0)
        nats_server.stop()
        nats_server.wipe()  # no persistence: the stream is gone
        nats_server.start()
        simulator.set_job("j2", status="Failed", error_message="gone")
        await wait_until(lambda: watcher.status.events.get("dts.job.status_changed", 0) >= 1)
        await wait_until(lambda: watcher.store.outbox_depth() == 0)
        stop.set()
    stream = await read_stream(nats_server.url)
    assert job_events(stream) == {"j2/Forward": [("status_changed", "Failed")]}


# -- the process killed at any point of a cycle ---------------------------------------------


def run_once(settings_env: dict[str, str], crash_at: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTS_WATCHER_", "ALIBABA_"))}
    env.update(settings_env)
    if crash_at:
        env[CRASH_ENV] = crash_at
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "once", "--publish-timeout", "10"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


@pytest.mark.wall_clock  # a watcher subprocess signs with the real clock
@pytest.mark.parametrize(
    "point", ["before_commit", "between_commits", "after_commit", "after_publish"]
)
@pytest.mark.parametrize("emit", ["page", "listing"])
def test_a_crash_at_any_point_loses_and_doubles_nothing(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer, point: str, emit: str
) -> None:
    populate(simulator)
    env = {
        "DTS_WATCHER_DTS__ENDPOINT": simulator.url,
        "DTS_WATCHER_DTS__REGIONS": '["cn-hangzhou", "cn-shanghai"]',
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
        "DTS_WATCHER_NATS__URL": nats_server.url,
        "DTS_WATCHER_STATE__PATH": str(tmp_path / "state.sqlite3"),
        # One job's events per transaction, so a crash can fall between two of them.
        "DTS_WATCHER_STATE__EVENTS_PER_TRANSACTION": "1",
        "DTS_WATCHER_POLL__EMIT": emit,  # events saved page by page, or at the end
    }
    assert run_once(env) == 0  # first sight, published cleanly
    simulator.set_job("j1", status="Failed", error_message="boom")
    simulator.set_job("j2", delay=90)
    assert run_once(env, crash_at=point) == -signal.SIGKILL  # killed mid-cycle
    assert run_once(env) == 0  # the next run finishes the job
    assert run_once(env) == 0  # and a further one has nothing left to say
    stream = anyio.run(read_stream, nats_server.url)
    assert_no_duplicates(stream)
    assert job_events(stream) == {
        "j1/Forward": [("discovered", "Synchronizing"), ("status_changed", "Failed")],
        "j2/Forward": [("discovered", "Synchronizing"), ("delay_threshold_crossed", "warning")],
    }


# -- DTS faults: nothing invented, last known state kept, cycle incomplete -----------------

DTS_FAULTS = [
    {"kind": "throttle", "count": -1, "retry_after_ms": 1},
    {"kind": "unavailable", "count": -1},
    {"kind": "internal", "count": -1},
    {"kind": "slow", "seconds": 1.0, "count": -1},
    {"kind": "malformed", "variant": "html", "count": -1},
    {"kind": "malformed", "variant": "truncated", "count": -1},
    {"kind": "forbidden", "count": -1},
    {"kind": "expired_token", "count": -1},
    {"kind": "internal", "region": "cn-hangzhou", "page": 2, "count": -1},
    {"kind": "unavailable", "region": "cn-shanghai", "count": -1},
]


@pytest.mark.parametrize(
    "fault", DTS_FAULTS, ids=lambda f: "-".join(str(v) for v in f.values() if v != -1)
)
async def test_dts_faults_invent_nothing_and_keep_the_last_known_state(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer, fault: dict[str, Any]
) -> None:
    for i in range(40):  # two pages in cn-hangzhou
        simulator.add_job({"id": f"hz{i:02}", "region": "cn-hangzhou", "name": f"hz {i}"})
    simulator.add_job({"id": "sh01", "region": "cn-shanghai", "name": "sh"})
    settings = make_settings(
        tmp_path,
        nats_server.url,
        simulator.url,
        REGIONS,
        dts={"max_attempts": 2, "timeout": 0.3},
        health={"unavailable_after": 2},
    )
    async with open_watcher(settings) as watcher:
        first = await watcher.cycle()
        assert first.complete and len(first.events) == 41
        known = dict(watcher.baseline.jobs)  # type: ignore[union-attr]
        simulator.inject(fault)
        blind = [await watcher.cycle() for _ in range(3)]
        for result in blind:
            assert not result.complete
            assert [e.kind for e in result.events if e.is_job_event] == []
        assert dict(watcher.baseline.jobs) == known  # type: ignore[union-attr]
        own = [e.kind for r in blind for e in r.events]
        assert own.count("cycle_incomplete") == 3
        assert own.count("source_unavailable") >= 1
        simulator.clear_faults()
        simulator.set_job("hz05", status="Failed", error_message="changed while we were blind")
        healed = await watcher.cycle()
        assert healed.complete
        kinds = sorted(e.kind for e in healed.events)
        assert "status_changed" in kinds and "source_recovered" in kinds
        assert [e.kind for e in healed.events if e.is_job_event] == ["status_changed"]


async def test_rejected_credentials_invent_nothing(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer
) -> None:
    populate(simulator)
    settings = make_settings(tmp_path, nats_server.url, simulator.url, REGIONS)
    async with open_watcher(settings) as watcher:
        assert (await watcher.cycle()).complete
    simulator.remove_job("j2")  # a real change the blind watcher must not misreport
    wrong = make_settings(
        tmp_path,
        nats_server.url,
        simulator.url,
        REGIONS,
        credentials={"access_key_secret": "not-the-secret"},
    )
    async with open_watcher(wrong) as watcher:
        result = await watcher.cycle()
        assert not result.complete
        assert {r.error_code for r in result.snapshot.regions.values()} == {"SignatureDoesNotMatch"}
        assert [e.kind for e in result.events if e.is_job_event] == []
        assert len(watcher.baseline.jobs) == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("emit", ["page", "listing"])
async def test_removed_only_after_complete_listings(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer, emit: str
) -> None:
    for i in range(45):
        simulator.add_job({"id": f"hz{i:02}", "region": "cn-hangzhou"})
    settings = make_settings(
        tmp_path, nats_server.url, simulator.url, ["cn-hangzhou"], poll={"emit": emit}
    )
    async with open_watcher(settings) as watcher:
        assert (await watcher.cycle()).complete
        # Jobs created and deleted while pages are read: the listing shifts under us.
        simulator.inject({"kind": "drift", "page": 2, "action": "add"})
        simulator.inject({"kind": "drift", "page": 2, "action": "remove"})
        drifted = await watcher.cycle()
        assert drifted.complete  # re-read until consistent
        assert not [e for e in drifted.events if e.kind == "removed"]

        gone = simulator.jobs("cn-hangzhou")[10].id
        simulator.remove_job(gone)
        simulator.inject({"kind": "unavailable", "count": -1})
        incomplete = await watcher.cycle()  # absent, but the listing is not complete
        simulator.clear_faults()
        once = await watcher.cycle()  # absent from one complete listing
        twice = await watcher.cycle()  # absent from two: removed
        assert not incomplete.complete
        removed = [
            [e.job_id for e in r.events if e.kind == "removed"] for r in (incomplete, once, twice)
        ]
        expected_first = [e.job_id for e in drifted.events if e.kind == "discovered"]
        assert removed[0] == []  # an incomplete listing proves no absence
        assert gone not in removed[1]  # absent from one complete listing: not yet
        assert gone in removed[2]
        if emit == "listing":
            assert removed[1] == []
        else:
            # A page read during the drift showed the job it added, which was real
            # (discovered), and gone from every complete listing since: removed, after
            # two of them. Nothing else.
            drift_jobs = {j for j in expected_first if j.startswith("dtsdrift")}
            assert set(removed[1]) <= drift_jobs
        # Whatever the drift faults added or removed for real is reported as such, later.
        assert all(job_id not in expected_first or job_id == gone for job_id in removed[2])


# -- time ------------------------------------------------------------------------------------


async def test_wall_clock_jumps_break_neither_rules_nor_order(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer
) -> None:
    populate(simulator)
    base = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    times = iter(
        [base, base - timedelta(hours=1), base - timedelta(hours=1), base + timedelta(days=1)]
        + [base + timedelta(days=1, seconds=s) for s in range(100)]
    )
    current = [base]

    def now() -> datetime:
        return current[0]

    settings = make_settings(
        tmp_path, nats_server.url, simulator.url, REGIONS, rules={"delay_for_cycles": 2}
    )
    async with open_watcher(settings, now=now) as watcher:
        steps = [
            {},
            {"j1": {"status": "Suspending"}, "j2": {"delay": 100}},  # clock jumped back 1 h
            {"j1": {"status": "Synchronizing"}},  # same instant as the cycle before
            {"j1": {"status": "Failed"}, "j2": {"delay": 10}},  # a day ahead
        ]
        for step in steps:
            current[0] = next(times)
            for key, change in step.items():
                simulator.set_job(key, **change)
            assert (await watcher.cycle()).complete
        assert await watcher.flush(within=10)
    stream = await read_stream(nats_server.url)
    assert_no_duplicates(stream)
    assert job_events(stream) == {
        "j1/Forward": [
            ("discovered", "Synchronizing"),
            ("status_changed", "Suspending"),
            ("status_changed", "Synchronizing"),
            ("status_changed", "Failed"),
        ],
        # delay 100 held for two cycles (whatever the clock said), then fell back
        "j2/Forward": [
            ("discovered", "Synchronizing"),
            ("delay_threshold_crossed", "warning"),
            ("delay_threshold_crossed", "ok"),
        ],
    }


@pytest.mark.wall_clock  # a watcher subprocess signs with the real clock
def test_unusable_state_is_a_clear_error_not_a_reannouncement(
    tmp_path: Path, simulator: Simulator, nats_server: NatsServer
) -> None:
    populate(simulator)
    state = tmp_path / "state.sqlite3"
    env = {
        "DTS_WATCHER_DTS__ENDPOINT": simulator.url,
        "DTS_WATCHER_DTS__REGIONS": '["cn-hangzhou", "cn-shanghai"]',
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
        "DTS_WATCHER_NATS__URL": nats_server.url,
        "DTS_WATCHER_STATE__PATH": str(state),
    }
    assert run_once(env) == 0
    original = state.read_bytes()
    state.write_bytes(b"\x00garbage" * 512)
    for suffix in ("-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    assert run_once(env) == 2  # refused, with the recovery path in the message
    stream = anyio.run(read_stream, nats_server.url)
    assert sum(e["type"] == "dts.job.discovered" for e in stream) == 2  # nothing re-announced
    assert original  # the real file had content
