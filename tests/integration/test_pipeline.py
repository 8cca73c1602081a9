"""The whole watcher against the DTS simulator and a real nats-server.

A scripted multi-step scenario runs through real cycles (fetch, detect, commit, publish);
a JetStream read of the stream must then hold exactly the expected events, no more and
no fewer, in order per job, each valid against `dts-watcher schema`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.watcher import make_settings, read_stream
from watcher.events import json_schema
from watcher.service import open_watcher

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAILED_ITEMS = [
    {"name": "CHECK_CONN_SRC", "status": "Success"},
    {
        "name": "CHECK_AUTH_SRC",
        "status": "Failed",
        "error_message": "Access denied for user 'dts'",
        "repair_method": "CHECK_ERROR_SRC_AUTH_REPAIR",
    },
]


def facts(event: dict[str, Any]) -> tuple[Any, ...]:
    """What a consumer would look at, per kind."""
    data = event["data"]
    kind = event["type"].rsplit(".", 1)[1]
    if kind == "status_changed":
        return (kind, data["previous_status"], data["status"], data.get("recovered_from"))
    if kind == "delay_threshold_crossed":
        return (kind, data["previous_level"], data["level"], data["delay_seconds"])
    if kind == "precheck_failed":
        return (kind, tuple((i["item_name"], i["repair_method"]) for i in data["failed_items"]))
    if kind == "init_failed":
        return (kind, data["stage"], data["error_message"])
    return (kind, data["status"])


@pytest.mark.parametrize("emit", ["listing", "page"])
async def test_a_scenario_yields_exactly_the_expected_events_in_order(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator, emit: str
) -> None:
    sim = simulator
    sim.add_job({"id": "j1", "region": "cn-hangzhou", "name": "orders", "delay": 5})
    sim.add_job({"id": "j2", "region": "cn-hangzhou", "name": "crm", "status": "Prechecking"})
    sim.add_job({"id": "j3", "region": "cn-shanghai", "name": "pay", "direction": "Forward"})
    sim.add_job({"id": "j3", "region": "cn-shanghai", "name": "pay", "direction": "Reverse"})
    sim.add_job({"id": "j4", "region": "cn-shanghai", "name": "legacy"})
    settings = make_settings(
        tmp_path,
        nats_server.url,
        sim.url,
        ["cn-hangzhou", "cn-shanghai"],
        poll={"emit": emit},
        dts={"page_size": 10},  # pages: two jobs per page of their own below
    )
    for i in range(25):  # more pages, and jobs that never change
        sim.add_job({"id": f"quiet{i:02}", "region": "cn-hangzhou", "name": f"quiet {i}"})

    steps: list[dict[str, Any]] = [
        {},  # cycle 1: everything is discovered
        {
            "j1": {"delay": 70},
            "j2": {
                "status": "PrecheckFailed",
                "precheck": {"status": "Failed", "items": FAILED_ITEMS},
            },
            "j3/Reverse": {"status": "Failed", "error_message": "DTS-070211: Connect failed"},
        },
        {"j1": {"delay": 65}, "remove": "j4"},  # hovering: no event; j4 absent once
        {},  # j4 absent from a second complete listing: removed
        {
            "j1": {"delay": 400},
            "j2": {"status": "Prechecking", "precheck": {"status": "Success"}},
            "j3/Reverse": {"status": "Synchronizing", "error_message": ""},
            "add": {
                "id": "j5",
                "region": "cn-hangzhou",
                "name": "search",
                "status": "Initializating",
            },
        },
        {
            "j2": {
                "status": "PrecheckFailed",
                "precheck": {"status": "Failed", "items": FAILED_ITEMS},
            },
            "j5": {
                "status": "InitializeFailed",
                "structure_init": {"status": "Failed", "error_message": "type geometry missing"},
            },
            "j1": {"delay": 10},
        },
    ]
    async with open_watcher(settings) as watcher:
        for step in steps:
            for key, change in step.items():
                if key == "remove":
                    sim.remove_job(change)
                elif key == "add":
                    sim.add_job(change)
                else:
                    sim.set_job(key, **change)
            result = await watcher.cycle()
            assert result.complete
        assert await watcher.flush(within=10)

    received = await read_stream(nats_server.url)
    by_job: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for event in received:
        data = event["data"]
        if data["job_id"].startswith("quiet"):
            assert facts(event) == ("discovered", "Synchronizing")
            continue
        by_job[f"{data['job_id']}/{data['direction']}"].append(facts(event))

    assert dict(by_job) == {
        "j1/Forward": [
            ("discovered", "Synchronizing"),
            ("delay_threshold_crossed", "ok", "warning", 70),
            ("delay_threshold_crossed", "warning", "critical", 400),
            ("delay_threshold_crossed", "critical", "ok", 10),
        ],
        "j2/Forward": [
            ("discovered", "Prechecking"),
            ("status_changed", "Prechecking", "PrecheckFailed", None),
            ("precheck_failed", (("CHECK_AUTH_SRC", "CHECK_ERROR_SRC_AUTH_REPAIR"),)),
            ("status_changed", "PrecheckFailed", "Prechecking", "PrecheckFailed"),
            ("status_changed", "Prechecking", "PrecheckFailed", None),
            ("precheck_failed", (("CHECK_AUTH_SRC", "CHECK_ERROR_SRC_AUTH_REPAIR"),)),
        ],
        "j3/Forward": [("discovered", "Synchronizing")],
        "j3/Reverse": [
            ("discovered", "Synchronizing"),
            ("status_changed", "Synchronizing", "Failed", None),
            ("status_changed", "Failed", "Synchronizing", "Failed"),
        ],
        "j4/Forward": [("discovered", "Synchronizing"), ("removed", "Synchronizing")],
        "j5/Forward": [
            ("discovered", "Initializating"),
            ("status_changed", "Initializating", "InitializeFailed", None),
            ("init_failed", "structure", "type geometry missing"),
        ],
    }

    schema = json_schema()
    ids = set()
    for event in received:
        headers, subject = event.pop("_headers"), event.pop("_subject")
        jsonschema.validate(event, schema)
        assert headers["Nats-Msg-Id"] == event["id"]
        assert headers["Content-Type"] == "application/cloudevents+json"
        data = event["data"]
        kind = event["type"].rsplit(".", 1)[1]
        assert subject == f"dts.job.{data['region']}.{data['job_id']}.{kind}"
        ids.add(event["id"])
    assert len(ids) == len(received)  # every event once


async def test_events_wait_in_the_outbox_while_nats_is_down(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_job({"id": "j1", "region": "cn-hangzhou"})
    server = NatsServer(store_dir=tmp_path)
    settings = make_settings(tmp_path, server.url, simulator.url, ["cn-hangzhou"])
    try:
        async with open_watcher(settings) as watcher:
            result = await watcher.cycle()  # NATS is not running yet
            assert result.complete and [e.kind for e in result.events] == ["discovered"]
            assert not await watcher.flush(within=3)
            assert watcher.store.outbox_depth() == 1
            simulator.set_job("j1", status="Failed", error_message="boom")
            await watcher.cycle()
            server.start()
            assert await watcher.flush(within=10)
        received = await read_stream(server.url)
        assert [e["type"] for e in received] == ["dts.job.discovered", "dts.job.status_changed"]
    finally:
        server.close()
