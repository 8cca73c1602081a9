"""All of DTS through the whole watcher: the simulator serving DescribeDtsJobs (and the
legacy listing, and STS AssumeRole), the real nats-server, events read back from the
stream and validated against the published schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Simulator, parse_scenario
from dts_sim.accounts import account_keys, role_arn
from dts_sim.natsserver import NatsServer
from tests.support.watcher import make_settings, read_stream
from watcher.dts import signing
from watcher.dts.credentials.accounts import account_providers
from watcher.events import json_schema
from watcher.service import open_watcher
from watcher.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HZ = "cn-hangzhou"
SCENARIO = """
[[jobs]]
id = "dtsmig01"
region = "cn-hangzhou"
name = "orders backfill"
job_type = "migration"
status = "Migrating"
delay = 3

[[jobs]]
id = "dtssync01"
region = "cn-hangzhou"
name = "payments <-> ledger"
status = "Synchronizing"
tags = { env = "prod", team = "payments" }

[[jobs]]
id = "dtssync01"
region = "cn-hangzhou"
direction = "Reverse"
name = "payments <-> ledger"
status = "Synchronizing"

[[jobs]]
id = "dtssub01"
region = "cn-hangzhou"
name = "orders feed"
job_type = "subscribe"
status = "Normal"
"""


def settings_for(tmp_path: Path, nats: NatsServer, sim: Simulator, **sections: Any) -> Settings:
    dts = {"api": "DescribeDtsJobs", **sections.pop("dts", {})}
    return make_settings(tmp_path, nats.url, sim.url, [HZ], dts=dts, **sections)


def events_of(stream: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in stream if e["type"] == f"dts.job.{kind}"]


async def test_every_job_type_and_what_dts_says_about_it_becomes_events(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    with Simulator(parse_scenario(SCENARIO)) as sim:
        settings = settings_for(tmp_path, nats_server, sim)
        async with open_watcher(settings) as watcher:
            assert (await watcher.cycle()).complete
            sim.set_job(
                "dtssync01",
                status="Retrying",
                retry={"count": 3, "seconds": 90, "target": "destDB", "module": "writer"},
            )
            sim.set_job("dtsmig01", delay=400)  # 400,250 ms
            sim.set_job(
                "dtssub01",
                status="Abnormal",
                error_message="consumer lost",
                error_details=[{"code": "DTS-52001", "help_url": "https://help.aliyun.com/d"}],
            )
            sim.set_job("dtssync01/Reverse", status="Failed")
            assert (await watcher.cycle()).complete
            sim.set_job("dtsmig01", status="Finished", delay=0)
            assert (await watcher.cycle()).complete
            assert await watcher.flush(within=10)
    stream = await read_stream(nats_server.url)
    schema = json_schema()
    for event in stream:
        jsonschema.validate({k: v for k, v in event.items() if not k.startswith("_")}, schema)

    found = {(d["job_id"], d["direction"], d["job_type"]) for d in events_of(stream, "discovered")}
    assert found == {
        ("mig01", "Forward", "migration"),
        ("sync01", "Forward", "sync"),
        ("sync01r", "Reverse", "sync"),
        ("sub01", "Forward", "subscribe"),
    }
    discovered = {d["job_id"]: d["job"] for d in events_of(stream, "discovered")}
    assert discovered["sync01"]["tags"] == {"env": "prod", "team": "payments"}
    assert (
        discovered["sync01r"]["instance_id"] == discovered["sync01"]["instance_id"] == "dtssync01"
    )
    assert all(d["account"] == "default" for d in events_of(stream, "discovered"))

    changes = {(d["job_id"], d["status"]): d for d in events_of(stream, "status_changed")}
    severity = {
        (e["data"]["job_id"], e["data"]["status"]): e["severity"]
        for e in stream
        if e["type"] == "dts.job.status_changed"
    }
    retrying = changes[("sync01", "Retrying")]
    assert severity[("sync01", "Retrying")] == "warning"
    assert retrying["retry"] == {
        "count": 3,
        "retry_seconds": 90,
        "max_retry_seconds": 43200,
        "target": "destDB",
        "module": "writer",
        "error_message": "DTS-30011: Connect to source database failed: connection refused",
    }
    assert severity[("sub01", "Abnormal")] == "critical"
    assert changes[("sub01", "Abnormal")]["error_details"] == [
        {"error_code": "DTS-52001", "help_url": "https://help.aliyun.com/d"}
    ]
    assert severity[("sync01r", "Failed")] == "critical"  # the reverse half alone
    assert ("sync01", "Failed") not in severity
    assert severity[("mig01", "Finished")] == "info"

    # migration delay arrives in milliseconds; events say seconds
    (crossed,) = events_of(stream, "delay_threshold_crossed")
    assert (crossed["job_id"], crossed["level"], crossed["delay_seconds"]) == (
        "mig01",
        "critical",
        400,
    )


async def test_without_job_type_dts_lists_migration_jobs_only() -> None:
    with Simulator(parse_scenario(SCENARIO)) as sim:
        host = sim.url.removeprefix("http://")

        def call(params: dict[str, str]) -> dict[str, Any]:
            request = signing.sign_request(
                method="GET",
                host=host,
                scheme="http",
                action="DescribeDtsJobs",
                params=params,
                access_key_id=DEFAULT_ACCESS_KEY_ID,
                access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
                security_token=None,
                now=datetime.now(UTC),
                nonce=uuid.uuid4().hex,
            )
            answer: dict[str, Any] = httpx.get(request.url, headers=request.headers).json()
            return answer

        plain = call({"RegionId": HZ})
        assert [j["DtsJobId"] for j in plain["DtsJobList"]] == ["mig01"]
        sync = call({"RegionId": HZ, "JobType": "SYNC"})
        assert [j["DtsJobId"] for j in sync["DtsJobList"]] == ["sync01"]  # one entry, two jobs
        assert sync["DtsJobList"][0]["ReverseJob"]["DtsJobId"] == "sync01r"


ACCOUNTS = """
[[jobs]]
id = "dtsprod01"
region = "cn-hangzhou"
account = "prod"
status = "Synchronizing"

[[jobs]]
id = "dtsdev01"
region = "cn-hangzhou"
account = "dev"
job_type = "migration"
status = "Migrating"

[[jobs]]
id = "dtsmine01"
region = "cn-hangzhou"
status = "Synchronizing"
"""


async def test_a_failing_account_beside_a_healthy_one(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    with Simulator(parse_scenario(ACCOUNTS)) as sim:
        sim.deny_role("dev")  # its trust policy does not name the watcher
        settings = settings_for(
            tmp_path,
            nats_server,
            sim,
            credentials={"sts_endpoint": sim.url},
            health={"unavailable_after": 2},
            accounts=[
                {"name": "prod", "regions": [HZ], "role_arn": role_arn("prod")},
                {"name": "dev", "regions": [HZ], "role_arn": role_arn("dev")},
                {"name": "legacy", "regions": [HZ], "api": "DescribeSynchronizationJobs"},
            ],
        )
        async with open_watcher(settings) as watcher:
            first = await watcher.cycle()
            second = await watcher.cycle()
            sim.set_job("dtsprod01", status="Failed")
            await watcher.cycle()
            assert await watcher.flush(within=10)
        assert {label: o.complete for label, o in first.snapshot.regions.items()} == {
            "prod/cn-hangzhou": True,
            "dev/cn-hangzhou": False,
            "legacy/cn-hangzhou": True,
        }
        assert not second.complete
        keys = {r.access_key_id for r in sim.requests if r.account == "prod"}
        assert all(key and key.startswith("STS.") for key in keys)  # the role's key
    stream = await read_stream(nats_server.url)
    discovered = {(d["account"], d["job_id"]) for d in events_of(stream, "discovered")}
    # the base key is the default account's: the legacy account reads dtsmine01
    assert discovered == {("prod", "prod01"), ("legacy", "dtsmine01")}
    (failed,) = events_of(stream, "status_changed")
    assert (failed["account"], failed["job_id"], failed["status"]) == ("prod", "prod01", "Failed")
    watcher_events = {e["type"].rsplit(".", 1)[1]: e["data"] for e in stream}
    incomplete = watcher_events["cycle_incomplete"]["regions"]
    assert set(incomplete) == {"dev/cn-hangzhou"}
    assert incomplete["dev/cn-hangzhou"]["account"] == "dev"
    assert incomplete["dev/cn-hangzhou"]["error_code"] == "CredentialsUnavailable"
    assert "may not assume this role" in incomplete["dev/cn-hangzhou"]["error"]
    unavailable = watcher_events["source_unavailable"]
    assert (unavailable["account"], unavailable["region"]) == ("dev", HZ)


async def test_assumed_role_keys_are_renewed_before_they_expire(tmp_path: Path) -> None:
    now = [datetime.now(UTC)]
    with Simulator(parse_scenario(ACCOUNTS), clock=lambda: now[0]) as sim:
        settings = make_settings(
            tmp_path,
            "nats://127.0.0.1:1",
            sim.url,
            [HZ],
            credentials={"sts_endpoint": sim.url, "role_session_duration": 3600},
            accounts=[{"name": "prod", "regions": [HZ], "role_arn": role_arn("prod")}],
        )
        provider = account_providers(settings, now=lambda: now[0])["prod"]
        first = await provider.get()
        again = await provider.get()
        now[0] += timedelta(minutes=47)  # 13 minutes left: not yet due (20% is 12)
        same = await provider.get()
        now[0] += timedelta(minutes=2)  # 11 minutes left: renewed before DTS refuses it
        renewed = await provider.get()
        assumed = [r for r in sim.requests if r.action == "AssumeRole"]
    assert first.access_key_id == again.access_key_id == same.access_key_id
    assert renewed.access_key_id != first.access_key_id
    assert len(assumed) == 2
    assert {r.access_key_id for r in assumed} == {DEFAULT_ACCESS_KEY_ID}  # the base key


async def test_a_profile_account_reads_with_the_profile_key(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    key_id, secret = account_keys("dev")
    profiles = tmp_path / "config.json"
    profiles.write_text(
        '{"current": "default", "profiles": [{"name": "dev", "mode": "AK", '
        f'"access_key_id": "{key_id}", "access_key_secret": "{secret}"}}]}}'
    )
    with Simulator(parse_scenario(ACCOUNTS)) as sim:
        settings = settings_for(
            tmp_path,
            nats_server,
            sim,
            credentials={"profile_file": profiles},
            accounts=[{"name": "dev", "regions": [HZ], "profile": "dev"}],
        )
        async with open_watcher(settings) as watcher:
            result = await watcher.cycle()
    assert result.complete
    assert [(j.account, j.job_id, j.job_type) for j in result.snapshot] == [
        ("dev", "dev01", "migration")
    ]


async def test_changing_the_api_neither_removes_nor_rediscovers_a_job(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Legacy -> DescribeDtsJobs -> legacy, on one state file: the synchronization jobs
    (a two-way one among them) keep their state under their other key each time."""
    with Simulator(parse_scenario(SCENARIO)) as sim:
        sim.set_job("dtssync01", delay=90)  # a warning level, to see memory carried over
        runs = []
        for api in (
            "DescribeSynchronizationJobs",
            "DescribeDtsJobs",
            "DescribeSynchronizationJobs",
        ):
            settings = settings_for(
                tmp_path, nats_server, sim, dts={"api": api}, rules={"removed_after": 1}
            )
            async with open_watcher(settings) as watcher:
                for _ in range(2):
                    result = await watcher.cycle()
                    assert result.complete
                    runs.append(
                        [(e.kind, e.data["job_id"], e.data["direction"]) for e in result.events]
                    )
                assert await watcher.flush(within=10)
        sim.set_job("dtssync01/Reverse", status="Failed")
        async with open_watcher(settings) as watcher:
            last = await watcher.cycle()
    jobs = {("dtssync01", "Forward"), ("dtssync01", "Reverse")}
    assert {(i, d) for kind, i, d in runs[0] if kind == "discovered"} == jobs
    assert ("delay_threshold_crossed", "dtssync01", "Forward") in runs[0]
    # DescribeDtsJobs shows the migration and change tracking jobs as new, and only those
    assert runs[2] == [("discovered", "mig01", "Forward"), ("discovered", "sub01", "Forward")]
    assert runs[1] == runs[3] == runs[4] == runs[5] == []
    # and the state followed: the reverse half's failure is its first change
    assert [(e.kind, e.data["job_id"], e.data["status"]) for e in last.events] == [
        ("status_changed", "dtssync01", "Failed")
    ]
    stream = await read_stream(nats_server.url)
    assert events_of(stream, "removed") == []


async def test_the_probe_tries_every_account_and_region_and_says_what_is_wrong(
    tmp_path: Path,
) -> None:
    from watcher.probe import probe_dts

    with Simulator(parse_scenario(ACCOUNTS)) as sim:
        sim.deny_role("dev")
        settings = make_settings(
            tmp_path,
            "nats://127.0.0.1:1",
            sim.url,
            [HZ],
            dts={"api": "DescribeDtsJobs"},
            credentials={"sts_endpoint": sim.url},
            accounts=[
                {"name": "prod", "regions": [HZ, "cn-beijing"], "role_arn": role_arn("prod")},
                {"name": "dev", "regions": [HZ], "role_arn": role_arn("dev")},
                {"name": "gone", "regions": [HZ], "role_arn": "acs:ram::42:role/nobody"},
            ],
        )
        verdicts = {v.check: v for v in await probe_dts(settings)}
    assert verdicts["DTS credentials prod"].ok
    assert not verdicts["DTS credentials dev"].ok
    assert "may not assume this role" in verdicts["DTS credentials dev"].message
    assert "the role does not exist" in verdicts["DTS credentials gone"].message
    shard = verdicts["DTS prod/cn-hangzhou"]
    assert shard.ok, shard
    assert "1 job visible with DescribeDtsJobs (sync 1, migration 0, subscribe 0)" in shard.message
    assert verdicts["DTS prod/cn-beijing"].ok
    assert not verdicts["DTS dev/cn-hangzhou"].ok
    assert "credentials are unusable" in verdicts["DTS dev/cn-hangzhou"].message
