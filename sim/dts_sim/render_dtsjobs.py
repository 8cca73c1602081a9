"""What DescribeDtsJobs answers: a `DtsJobList` entry and a page's body.

Field names are those of Alibaba's SDK (`alibabacloud-dts20200101`); the tests round-trip
these bodies through its models. What differs from the legacy listing (`render.py`):

- the job is `DtsJobId` (`JobSpec.dts_job_id`), its instance `DtsInstanceID` (the
  scenario's `id`, which the legacy listing calls SynchronizationJobId);
- `JobType` in lower case: `online` for migration, `sync`, `subscribe`;
- `Delay` in milliseconds for migration jobs (seconds otherwise), `Checkpoint` in unix
  seconds, `RetryState` when the job is retrying, `ErrorDetails`, `TagList`;
- a two-way synchronization is one entry: the forward job with `DtsJobDirection` and
  the reverse one nested as `ReverseJob`;
- statuses in DescribeDtsJobs' spelling (`Initializing`, not the legacy `Initializating`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from dts_sim.jobs import JobSpec
from dts_sim.render import BASE_CREATED, display_name, job_to_api, utc_text

__all__ = ["Entry", "dts_entries", "dts_job_to_api", "dts_page_body"]

Entry = tuple[JobSpec, JobSpec | None]  # a job, and the reverse half of a two-way one
_JOB_TYPE = {"migration": "online", "sync": "sync", "subscribe": "subscribe"}
_STATUS = {"Initializating": "Initializing"}
_RUNNING = ("Synchronizing", "Migrating", "Normal", "Modifying", "Retrying")
# How far behind a running job's checkpoint is, in seconds, when the scenario says nothing.
_CHECKPOINT_BASE = BASE_CREATED + timedelta(days=1)


def dts_entries(jobs: Sequence[JobSpec]) -> list[Entry]:
    """The entries of a listing: each job once, a Reverse half nested in its Forward one
    (a Reverse half whose Forward one is not listed stands alone)."""
    forwards = {job.id for job in jobs if job.direction == "Forward"}
    reverses = {job.id: job for job in jobs if job.direction == "Reverse"}
    out: list[Entry] = []
    for job in jobs:
        if job.direction == "Forward":
            out.append((job, reverses.get(job.id)))
        elif job.id not in forwards:
            out.append((job, None))
    return out


def _record(job: JobSpec, created: datetime) -> dict[str, Any]:
    """The fields one job (or a reverse half) carries."""
    # stages, precheck, endpoints, performance, as the legacy listing has them (its
    # quirks left out: DescribeDtsJobs' own are applied to the whole entry)
    legacy = job_to_api(job.model_copy(update={"quirks": []}) if job.quirks else job, (), created)
    out: dict[str, Any] = {
        "DtsJobId": job.dts_job_id,
        "DtsInstanceID": job.id,
        "DtsJobName": display_name(job),
        "Status": _STATUS.get(job.status, job.status),
        # milliseconds for migration jobs, not a whole number of seconds, as DTS says it
        "Delay": job.delay * 1000 + (250 if job.delay else 0)
        if job.job_type == "migration"
        else job.delay,
        "Checkpoint": str(
            job.checkpoint if job.checkpoint is not None else default_checkpoint(job)
        ),
        "CreateTime": utc_text(created),
        "DtsJobClass": job.job_class,
        "PayType": job.pay_type,
    }
    if "ErrorMessage" in legacy:
        out["ErrorMessage"] = legacy["ErrorMessage"]
    if "ExpireTime" in legacy:
        out["ExpireTime"] = legacy["ExpireTime"]
    if job.error_details:
        out["ErrorDetails"] = [
            {"ErrorCode": d.code, "HelpUrl": d.help_url or ""} for d in job.error_details
        ]
    if job.retry is not None or job.status == "Retrying":
        r = job.retry
        out["RetryState"] = {
            "Retrying": job.status == "Retrying",
            "RetryCount": r.count if r else 1,
            "RetryTime": r.seconds if r else 60,
            "MaxRetryTime": r.max_seconds if r else 43200,
            "RetryTarget": r.target if r else "srcDB",
            "Module": r.module if r else "reader",
            "ErrMessage": r.error_message if r else "retrying",
            "JobId": job.dts_job_id,
        }
    out["StructureInitializationStatus"] = legacy["StructureInitializationStatus"]
    out["DataInitializationStatus"] = legacy["DataInitializationStatus"]
    out["DataSynchronizationStatus"] = {
        "Status": "Catched" if job.delay == 0 and job.status in _RUNNING else "Migrating",
        "Percent": "95",
        "Progress": "0",
    }
    out["SourceEndpoint"] = _endpoint(legacy["SourceEndpoint"], job.region)
    out["DestinationEndpoint"] = _endpoint(legacy["DestinationEndpoint"], job.region)
    out["Performance"] = {
        "Rps": legacy["Performance"]["RPS"],
        "Flow": legacy["Performance"]["FLOW"].removesuffix("MB/s"),
    }
    out["PrecheckStatus"] = _precheck(legacy["PrecheckStatus"])
    return out


def default_checkpoint(job: JobSpec) -> int:
    """A checkpoint that trails by the job's delay (a fixed moment: scenarios are
    deterministic; tests that care give `checkpoint`)."""
    return int(_CHECKPOINT_BASE.timestamp()) - job.delay


def _endpoint(legacy: dict[str, Any], region: str) -> dict[str, Any]:
    return {
        "InstanceID": legacy["InstanceId"],
        "Ip": legacy["IP"],
        "InstanceType": legacy["InstanceType"],
        "Port": legacy["Port"],
        "UserName": legacy["UserName"],
        "EngineName": legacy["EngineName"],
        "Region": region,
    }


def _precheck(legacy: dict[str, Any]) -> dict[str, Any]:
    return {
        "Status": legacy["Status"],
        "Percent": legacy["Percent"],
        "Detail": [
            {
                "CheckItem": item["ItemName"],
                "CheckResult": item["CheckStatus"],
                **({"FailedReason": item["ErrorMessage"]} if "ErrorMessage" in item else {}),
                **({"RepairMethod": item["RepairMethod"]} if "RepairMethod" in item else {}),
            }
            for item in legacy["Detail"]
        ],
    }


def dts_job_to_api(
    job: JobSpec,
    reverse: JobSpec | None = None,
    created: datetime | None = None,
    quirks: Iterable[str] = (),
) -> dict[str, Any]:
    """One DtsJobList entry; `reverse` is the Reverse half of a two-way job, if any."""
    created = job.created or created or BASE_CREATED
    out = _record(job, created)
    out["JobType"] = _JOB_TYPE[job.job_type]
    if job.resource_group:
        out["ResourceGroupId"] = job.resource_group
    out["TagList"] = [{"TagKey": k, "TagValue": v} for k, v in job.tags.items()]
    if reverse is not None:
        out["DtsJobDirection"] = "Forward"
        inner = _record(reverse, reverse.created or created)
        inner["DtsJobDirection"] = "Reverse"
        out["ReverseJob"] = inner
    q = set(quirks) | set(job.quirks)
    if "lowercase_status" in q:
        out["Status"] = out["Status"].lower()
    if "omit_precheck" in q:
        del out["PrecheckStatus"]
    if "omit_performance" in q:
        del out["Performance"]
    if "lowercase_keys" in q:
        return _lower_keys(out)  # type: ignore[no-any-return]
    return out


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def dts_page_body(
    entries: Sequence[Entry],
    *,
    total: int,
    page_number: int,
    request_id: str,
    render: Callable[[Entry], dict[str, Any]],
) -> dict[str, Any]:
    """A whole successful DescribeDtsJobs body for one page."""
    return {
        "RequestId": request_id,
        "HttpStatusCode": 200,
        "Success": True,
        "PageNumber": page_number,
        "PageRecordCount": len(entries),
        "TotalRecordCount": total,
        "DtsJobList": [render(entry) for entry in entries],
        "EtlDemoList": [],
    }
