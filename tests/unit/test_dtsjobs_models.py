"""DescribeDtsJobs' models against Alibaba's SDK (`alibabacloud-dts20200101`), the
authority for field names, and against the variants real responses show.

The simulator's bodies are round-tripped through the SDK's response model: every key the
simulator sends must be one the SDK knows (its `to_map()` drops the others), and what our
models read must equal what the SDK's model holds. Our request parameters must be the
SDK request model's names.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from alibabacloud_dts20200101 import models as sdk

from dts_sim import JobSpec
from dts_sim.render import BASE_CREATED
from dts_sim.render_dtsjobs import dts_entries, dts_job_to_api, dts_page_body
from watcher.dts.apis import DtsJobsApi, Listing
from watcher.dts.dtsjobs import ApiRefusal, parse_dts_jobs_page
from watcher.settings import DtsSettings
from watcher.snapshot import ErrorDetail, Shard

HZ = "cn-hangzhou"
JOBS = [
    JobSpec(id="dtsmig1", region=HZ, job_type="migration", status="Migrating", delay=42),
    JobSpec(
        id="dtssync1",
        region=HZ,
        status="Retrying",
        retry={"count": 4, "seconds": 300, "target": "destDB", "module": "writer"},
        error_details=[{"code": "DTS-31009", "help_url": "https://help.aliyun.com/x"}],
        tags={"env": "prod", "team": "pay"},
        checkpoint=1718000000,
    ),
    JobSpec(id="dtssync1", region=HZ, direction="Reverse", status="Synchronizing", delay=9),
    JobSpec(id="dtssub1", region=HZ, job_type="subscribe", status="Abnormal", pay_type="PrePaid"),
    JobSpec(id="dtssync2", region=HZ, status="Initializating", error_message="still going"),
]


def body(jobs: list[JobSpec] = JOBS) -> dict[str, Any]:
    entries = dts_entries(jobs)
    return dts_page_body(
        entries,
        total=len(entries),
        page_number=1,
        request_id="REQ",
        render=lambda e: dts_job_to_api(e[0], e[1], BASE_CREATED),
    )


def sdk_round_trip(data: dict[str, Any]) -> dict[str, Any]:
    model = sdk.DescribeDtsJobsResponseBody().from_map(copy.deepcopy(data))
    return dict(model.to_map())


def drop_empty(value: Any) -> Any:
    """The SDK writes empty lists for absent ones; compare what carries information."""
    if isinstance(value, dict):
        return {k: drop_empty(v) for k, v in value.items() if v not in ([], None)}
    if isinstance(value, list):
        return [drop_empty(v) for v in value]
    return value


def test_every_field_the_simulator_sends_is_one_the_sdk_knows() -> None:
    served = json.loads(json.dumps(body()))
    assert drop_empty(sdk_round_trip(served)) == drop_empty(served)


def test_what_we_read_is_what_the_sdk_reads() -> None:
    served = body()
    model = sdk.DescribeDtsJobsResponseBody().from_map(copy.deepcopy(served))
    page = parse_dts_jobs_page(served, HZ, "sync")
    assert page.total_record_count == model.total_record_count == 4
    assert page.raw_count == len(model.dts_job_list) == 4  # a two-way job is one entry
    jobs = {(j.job_id, j.direction): j for j in page.jobs}
    for entry in model.dts_job_list:
        ours = jobs[(entry.dts_job_id, "Forward")]
        assert ours.instance_id == entry.dts_instance_id
        assert ours.job_name == entry.dts_job_name
        assert ours.checkpoint == entry.checkpoint
        assert {"online": "migration"}.get(entry.job_type, entry.job_type) == ours.job_type
        unit = 1000 if entry.job_type == "online" else 1
        assert ours.delay_seconds == entry.delay // unit
        assert dict(ours.tags) == {t.tag_key: t.tag_value for t in entry.tag_list}
        assert ours.error_details == tuple(
            ErrorDetail(d.error_code, d.help_url) for d in entry.error_details
        )
        if entry.retry_state is not None:
            r, s = ours.retry, entry.retry_state
            assert r is not None
            assert (r.count, r.retry_seconds, r.max_retry_seconds) == (
                s.retry_count,
                s.retry_time,
                s.max_retry_time,
            )
            assert (r.target, r.module, r.error_message, r.retrying) == (
                s.retry_target,
                s.module,
                s.err_message,
                s.retrying,
            )
        if entry.reverse_job is not None:
            reverse = jobs[(entry.reverse_job.dts_job_id, "Reverse")]
            assert reverse.status == entry.reverse_job.status
            assert reverse.delay_seconds == entry.reverse_job.delay
            assert reverse.instance_id == entry.reverse_job.dts_instance_id == entry.dts_instance_id


def test_normalized_jobs_of_every_type() -> None:
    jobs = {(j.job_id, j.direction): j for j in parse_dts_jobs_page(body(), HZ, "sync").jobs}
    migration = jobs[("mig1", "Forward")]
    # 42 s as DTS says it for a migration job: 42,250 ms
    assert (migration.job_type, migration.status, migration.delay_seconds) == (
        "migration",
        "Migrating",
        42,
    )
    retrying = jobs[("sync1", "Forward")]
    assert retrying.status == "Retrying" and retrying.retry is not None
    assert retrying.retry.count == 4 and retrying.retry.target == "destDB"
    assert retrying.checkpoint == "1718000000"
    reverse = jobs[("sync1r", "Reverse")]
    assert (reverse.status, reverse.delay_seconds, reverse.tags) == (
        "Synchronizing",
        9,
        (("env", "prod"), ("team", "pay")),  # a reverse half has its instance's tags
    )
    subscription = jobs[("sub1", "Forward")]
    assert (subscription.job_type, subscription.status) == ("subscribe", "Abnormal")
    assert subscription.expire_time is not None
    # DescribeDtsJobs spells it Initializing; the watcher keeps one spelling for both APIs
    assert jobs[("sync2", "Forward")].status == "Initializating"


def variants(record: dict[str, Any]) -> dict[str, Any]:
    """Letter case, strings for numbers, wrapped lists, missing and malformed objects."""
    out = {k[:1].lower() + k[1:]: v for k, v in record.items()}
    out["delay"] = str(record["Delay"])
    out["tagList"] = {"TagList": record["TagList"]}
    out["retryState"] = {**record["RetryState"], "RetryCount": "4", "Retrying": "true"}
    out["errorDetails"] = record["ErrorDetails"][0]  # one object, not a list
    out["performance"] = "n/a"
    del out["precheckStatus"]
    return out


def test_real_world_variants_read_the_same() -> None:
    plain = body(JOBS[1:2])
    odd = {
        "requestId": "REQ",
        "totalRecordCount": "1",
        "DtsJobList": {"DtsJob": [variants(plain["DtsJobList"][0])]},
    }
    (a,) = parse_dts_jobs_page(plain, HZ, "sync").jobs
    (b,) = parse_dts_jobs_page(odd, HZ, "sync").jobs
    assert (b.job_id, b.status, b.delay_seconds, b.tags, b.retry, b.error_details) == (
        a.job_id,
        a.status,
        a.delay_seconds,
        a.tags,
        a.retry,
        a.error_details,
    )
    assert b.precheck is None and b.rps is None


def test_entries_without_an_id_are_skipped_and_counted() -> None:
    data = body(JOBS[:1])
    data["DtsJobList"] += [{"Status": "Migrating"}, "garbage"]
    page = parse_dts_jobs_page(data, HZ, "migration")
    assert (len(page.jobs), page.skipped, page.raw_count) == (1, 2, 3)


def test_a_job_type_dts_leaves_out_is_the_listings() -> None:
    data = body(JOBS[:1])
    del data["DtsJobList"][0]["JobType"]
    (job,) = parse_dts_jobs_page(data, HZ, "migration").jobs
    assert job.job_type == "migration" and job.delay_seconds == 42  # still milliseconds


def test_success_false_is_a_refusal_with_dts_code() -> None:
    with pytest.raises(ApiRefusal, match="InvalidJobType"):
        parse_dts_jobs_page(
            {"Success": "false", "ErrCode": "InvalidJobType", "ErrMessage": "no"}, HZ, "sync"
        )


@pytest.mark.parametrize("job_type", ["sync", "migration", "subscribe"])
def test_request_parameters_are_the_sdks(job_type: str) -> None:
    api = DtsJobsApi(DtsSettings(resource_group_id="rg-1"))
    params = {"RegionId": HZ, **api.params(Listing(job_type), 2, 30)}
    request = sdk.DescribeDtsJobsRequest(
        region_id=HZ,
        page_number=2,
        page_size=30,
        job_type=job_type.upper(),
        resource_group_id="rg-1",
    )
    assert params == {k: str(v) for k, v in request.to_map().items()}
    assert params["JobType"] in ("SYNC", "MIGRATION", "SUBSCRIBE")  # always sent


def test_name_and_tag_filters_apply_to_the_listing_read() -> None:
    api = DtsJobsApi(DtsSettings(job_name="SYNC1", tags={"env": "prod"}))
    page = api.parse(body(), Shard("default", HZ), Listing("sync"), None)
    assert {(j.job_id, j.direction) for j in page.jobs} == {
        ("sync1", "Forward"),
        ("sync1r", "Reverse"),
    }
    assert page.raw_count == 4  # the listing's counts stay whole
