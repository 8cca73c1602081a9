"""What the watcher publishes cannot be broken by what a job holds (issue 12, items 2 and 6;
issue 17, item 9): ids that used to share a subject, a 10 KB id, a job with 60,000
tables, a server or stream with small limits, an outbox row no server takes. Real
nats-server, the DTS simulator, the real watcher."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import nats
import pytest
from nats.js.api import StreamConfig

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.watcher import make_settings, read_stream
from watcher.events import json_schema
from watcher.service import open_watcher
from watcher.settings import Settings
from watcher.subjects import subject_token
from watcher.tail import Filters, TailOptions, tail

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

REGION = "cn-hangzhou"


def settings_for(tmp_path: Path, nats_url: str, sim: Simulator, **sections: Any) -> Settings:
    return make_settings(tmp_path, nats_url, sim.url, [REGION], **sections)


async def one_cycle(settings: Settings) -> None:
    async with open_watcher(settings) as watcher:
        result = await watcher.cycle()
        assert result.complete, result.reasons
        assert await watcher.flush(within=30), "the outbox did not drain"


def job_events(stream: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The `discovered` event of each job id."""
    return {e["data"]["job_id"]: e for e in stream if e["type"] == "dts.job.discovered"}


# -- one subject per job -----------------------------------------------------------------

ODD_IDS = ["a.b", "a_b", "a b", "a\x00b", "a\x7fb", "a\u200bb", "a*b", "a>b"]


async def test_ids_that_shared_a_subject_have_one_each_and_tail_finds_them(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    for job_id in ODD_IDS:
        simulator.add_job({"id": job_id, "region": REGION, "name": f"job {job_id!r}"})
    settings = settings_for(tmp_path, nats_server.url, simulator)
    await one_cycle(settings)

    found = job_events(await read_stream(nats_server.url))
    assert sorted(found) == sorted(ODD_IDS)  # data.job_id exact, each its own
    subjects = {e["_subject"] for e in found.values()}
    assert len(subjects) == len(ODD_IDS)
    for job_id, event in found.items():
        assert event["_subject"] == f"dts.job.{REGION}.{subject_token(job_id)}.discovered"
        assert event["subject"] == job_id

    # `tail --job` subscribes to the subject the same rule gives: it finds its job's event
    out = io.StringIO()
    options = TailOptions(
        filters=Filters(jobs=("a.b",)),
        since=datetime(2000, 1, 1, tzinfo=UTC),  # the whole stream (nats-server's clock)
        count=1,
    )
    with anyio.fail_after(30):
        assert await tail(settings, options, out=out, handle_signals=False) == 0
    assert "cn-hangzhou/a.b (job 'a.b')" in out.getvalue()


# -- size limits ---------------------------------------------------------------------------


async def test_a_huge_id_and_a_huge_job_do_not_hold_back_the_rest(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    long_id = "x" * 10_000
    tables = [f"orders_archive_{i:05}_partitioned_by_month" for i in range(60_000)]  # 2.6 MB
    simulator.add_job({"id": long_id, "region": REGION, "name": "long id"})
    simulator.add_job(
        {"id": "dtshuge", "region": REGION, "objects": [{"schema": "db", "include": tables}]}
    )
    simulator.add_job({"id": "dtsplain", "region": REGION, "name": "plain"})
    settings = settings_for(tmp_path, nats_server.url, simulator)
    await one_cycle(settings)
    simulator.set_job("dtsplain", status="Failed", error_message="after the big ones")
    await one_cycle(settings)

    stream = await read_stream(nats_server.url)
    found = job_events(stream)
    assert set(found) == {long_id, "dtshuge", "dtsplain"}
    # the long id: a short subject token, the id itself exact in the event
    assert len(subject_token(long_id)) <= 66
    assert found[long_id]["data"]["job_id"] == long_id and "truncated" not in found[long_id]["data"]
    # the huge job: trimmed, and says what went
    huge = found["dtshuge"]["data"]
    assert "job.objects" in huge["truncated"]["removed"]
    assert huge["truncated"]["original_bytes"] > 1024 * 1024
    assert huge["job"]["job_id"] == "dtshuge" and huge["job"]["status"] == "Synchronizing"
    # and what came after them went out
    changed = [e for e in stream if e["type"] == "dts.job.status_changed"]
    assert [e["data"]["error_message"] for e in changed] == ["after the big ones"]
    schema = json_schema()
    for event in stream:
        event = {k: v for k, v in event.items() if not k.startswith("_")}
        jsonschema.validate(event, schema)


async def test_a_server_with_a_small_max_payload_gets_events_that_fit(
    tmp_path: Path, simulator: Simulator
) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text("max_payload: 16384\n")
    (tmp_path / "nats").mkdir()
    tables = [f"table_{i:05}" for i in range(3_000)]  # ~50 KB of job
    simulator.add_job(
        {"id": "dtswide", "region": REGION, "objects": [{"schema": "db", "include": tables}]}
    )
    with NatsServer(store_dir=tmp_path / "nats", extra_args=("-c", str(conf))) as server:
        await one_cycle(settings_for(tmp_path, server.url, simulator))
        stream = await read_stream(server.url)
    (event,) = job_events(stream).values()
    assert event["data"]["truncated"]["limit_bytes"] <= 16384 - 512
    assert "job.objects" in event["data"]["truncated"]["removed"]


async def test_a_stream_with_a_small_max_msg_size_gets_events_that_fit(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name="DTS_EVENTS", subjects=["dts.>"], max_msg_size=8192)
        )
    finally:
        await nc.close()
    tables = [f"table_{i:05}" for i in range(3_000)]
    simulator.add_job(
        {"id": "dtswide", "region": REGION, "objects": [{"schema": "db", "include": tables}]}
    )
    await one_cycle(settings_for(tmp_path, nats_server.url, simulator))
    (event,) = job_events(await read_stream(nats_server.url)).values()
    assert event["data"]["truncated"]["limit_bytes"] == 8192 - 512


# -- what nothing can carry is set aside ---------------------------------------------------


async def test_an_event_no_server_takes_is_set_aside_announced_and_the_rest_goes_on(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtsafter", "region": REGION})
    settings = settings_for(tmp_path, nats_server.url, simulator)
    state = tmp_path / "state.sqlite3"
    async with open_watcher(settings):
        pass  # the state file exists
    # Outbox rows an older version saved: a 10 KB subject (nats-server: "maximum control
    # line exceeded"), and 2 MB that are not an event at all (cannot be trimmed).
    with sqlite3.connect(state) as db:
        db.execute(
            "INSERT INTO outbox(id, subject, payload) VALUES (?, ?, ?), (?, ?, ?)",
            (
                "old-long-subject",
                f"dts.job.{REGION}.{'y' * 10_000}.discovered",
                b'{"specversion": "1.0"}',
                "old-garbage",
                "dts.job.cn-hangzhou.garbage.discovered",
                b"\xff" * (2 * 1024 * 1024),
            ),
        )
    async with open_watcher(settings) as watcher:
        result = await watcher.cycle()
        assert result.complete
        assert await watcher.flush(within=30)
        letters = watcher.store.dead_letters()
        assert [d.id for d in letters] == ["old-long-subject", "old-garbage"]
        assert "characters long" in letters[0].reason
        assert "cannot be trimmed" in letters[1].reason
        assert watcher.status.publishing.dead_lettered == 2
        body, _ = await watcher.metrics.render()
        assert b"dts_watcher_events_dead_lettered_total 2.0" in body

    stream = await read_stream(nats_server.url)
    announced = [e for e in stream if e["type"] == "dts.watcher.event_dead_lettered"]
    assert [a["data"]["event_id"] for a in announced] == ["old-long-subject", "old-garbage"]
    assert all(a["severity"] == "critical" for a in announced)
    assert "dtsafter" in job_events(stream)  # the rest went on


# -- what events carry ---------------------------------------------------------------------


@pytest.mark.parametrize("details", [True, False])
async def test_endpoint_details_can_be_left_out_of_events(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator, details: bool
) -> None:
    endpoint = {"instance_id": "rm-src", "engine": "MySQL", "ip": "10.1.2.3", "port": 3306,
                "user": "dts_sync"}  # fmt: skip
    simulator.add_job({"id": "dtsends", "region": REGION, "source": endpoint})
    settings = settings_for(
        tmp_path, nats_server.url, simulator, events={"endpoint_details": details}
    )
    await one_cycle(settings)
    (event,) = job_events(await read_stream(nats_server.url)).values()
    source = event["data"]["job"]["source"]
    assert source["instance_id"] == "rm-src"
    if details:
        assert (source["ip"], source["port"], source["user_name"]) == ("10.1.2.3", 3306, "dts_sync")
    else:
        assert not {"ip", "port", "user_name"} & source.keys()
        assert "10.1.2.3" not in str(event) and "dts_sync" not in str(event)
