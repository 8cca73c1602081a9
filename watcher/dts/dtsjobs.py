"""Response models for DescribeDtsJobs (API 2020-01-01), and their normalization into
JobState.

DescribeDtsJobs lists migration, synchronization and change tracking jobs, one job type
per call (`JobType`, MIGRATION when absent). Field names follow Alibaba's SDK
(`alibabacloud-dts20200101`, the tests hold ours against its models). The models are as
tolerant as the legacy ones (`watcher.dts.models`, whose loose types they reuse): keys
in any letter case, numbers as strings, missing objects, lists bare or wrapped. What is
particular to this API:

- `Delay` is in milliseconds for migration jobs and in seconds for the others; a job's
  `delay_seconds` is always seconds.
- A two-way synchronization is one record: the forward job, with `DtsJobDirection` and
  the reverse job nested as `ReverseJob` (its own `DtsJobId` and status). They become two
  jobs, each with its direction.
- `JobType` comes back in lower case (`online` is migration, `sync`, `subscribe`).
- `RetryState`, `ErrorDetails` (`ErrorCode`, `HelpUrl`), `Checkpoint` (unix seconds),
  `TagList` (`TagKey`, `TagValue`) and `DtsInstanceID` are kept on the job.
- A body with `Success` false is DTS refusing the call with HTTP 200: `ApiRefusal`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from watcher.dts.models import (
    ApiModel,
    DataSynchronizationStatus,
    EndpointModel,
    InitializationStatus,
    LooseBool,
    LooseFloat,
    LooseInt,
    LooseList,
    LooseObject,
    LooseStr,
    LooseTime,
    PageParse,
    Performance,
    direction,
    endpoint,
    loose_list,
    stage,
    title,
)
from watcher.dts.record_cache import JobCache
from watcher.sharing import shared
from watcher.snapshot import (
    DEFAULT_ACCOUNT,
    ErrorDetail,
    JobState,
    Precheck,
    PrecheckItem,
    RetryState,
    normalize_status,
)

# JobType as DescribeDtsJobs answers it (lower case), and as it is asked for.
JOB_TYPE_NAMES = {"online": "migration", "migration": "migration", "sync": "sync"}
JOB_TYPE_NAMES["subscribe"] = "subscribe"
REQUEST_JOB_TYPE = {"migration": "MIGRATION", "sync": "SYNC", "subscribe": "SUBSCRIBE"}


class ApiRefusal(Exception):
    """A DescribeDtsJobs answer with `Success` false: DTS's code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class DtsTag(ApiModel):
    key: LooseStr = Field(None, alias="TagKey")
    value: LooseStr = Field(None, alias="TagValue")


class DtsErrorDetail(ApiModel):
    error_code: LooseStr = Field(None, alias="ErrorCode")
    help_url: LooseStr = Field(None, alias="HelpUrl")


class DtsRetryState(ApiModel):
    retrying: LooseBool = Field(None, alias="Retrying")
    retry_count: LooseInt = Field(None, alias="RetryCount")
    retry_time: LooseInt = Field(None, alias="RetryTime")
    max_retry_time: LooseInt = Field(None, alias="MaxRetryTime")
    retry_target: LooseStr = Field(None, alias="RetryTarget")
    module: LooseStr = Field(None, alias="Module")
    err_message: LooseStr = Field(None, alias="ErrMessage")


class DtsCheckItem(ApiModel):
    check_item: LooseStr = Field(None, alias="CheckItem")
    check_result: LooseStr = Field(None, alias="CheckResult")
    failed_reason: LooseStr = Field(None, alias="FailedReason")
    repair_method: LooseStr = Field(None, alias="RepairMethod")


class DtsPrecheckStatus(ApiModel):
    status: LooseStr = Field(None, alias="Status")
    percent: LooseFloat = Field(None, alias="Percent")
    detail: LooseList[DtsCheckItem] = Field(default_factory=list, alias="Detail")


class DtsJobRecord(ApiModel):
    """One job as DescribeDtsJobs describes it (the reverse half of a two-way job too)."""

    dts_job_id: LooseStr = Field(None, alias="DtsJobId")
    dts_instance_id: LooseStr = Field(None, alias="DtsInstanceID")
    dts_job_name: LooseStr = Field(None, alias="DtsJobName")
    job_type: LooseStr = Field(None, alias="JobType")
    dts_job_direction: LooseStr = Field(None, alias="DtsJobDirection")
    status: LooseStr = Field(None, alias="Status")
    delay: LooseFloat = Field(None, alias="Delay")
    checkpoint: LooseStr = Field(None, alias="Checkpoint")
    error_message: LooseStr = Field(None, alias="ErrorMessage")
    error_details: LooseList[DtsErrorDetail] = Field(default_factory=list, alias="ErrorDetails")
    retry_state: LooseObject[DtsRetryState] = Field(None, alias="RetryState")
    pay_type: LooseStr = Field(None, alias="PayType")
    dts_job_class: LooseStr = Field(None, alias="DtsJobClass")
    create_time: LooseTime = Field(None, alias="CreateTime")
    expire_time: LooseTime = Field(None, alias="ExpireTime")
    tag_list: LooseList[DtsTag] = Field(default_factory=list, alias="TagList")
    precheck_status: LooseObject[DtsPrecheckStatus] = Field(None, alias="PrecheckStatus")
    structure_initialization_status: LooseObject[InitializationStatus] = Field(
        None, alias="StructureInitializationStatus"
    )
    data_initialization_status: LooseObject[InitializationStatus] = Field(
        None, alias="DataInitializationStatus"
    )
    data_synchronization_status: LooseObject[DataSynchronizationStatus] = Field(
        None, alias="DataSynchronizationStatus"
    )
    source_endpoint: LooseObject[EndpointModel] = Field(None, alias="SourceEndpoint")
    destination_endpoint: LooseObject[EndpointModel] = Field(None, alias="DestinationEndpoint")
    performance: LooseObject[Performance] = Field(None, alias="Performance")


class DtsJobEntry(DtsJobRecord):
    """A `DtsJobList` entry: a job, and the reverse half of a two-way synchronization."""

    reverse_job: LooseObject[DtsJobRecord] = Field(None, alias="ReverseJob")


class DescribeDtsJobsResponse(ApiModel):
    request_id: LooseStr = Field(None, alias="RequestId")
    page_number: LooseInt = Field(None, alias="PageNumber")
    page_record_count: LooseInt = Field(None, alias="PageRecordCount")
    total_record_count: LooseInt = Field(None, alias="TotalRecordCount")
    success: LooseBool = Field(None, alias="Success")
    err_code: LooseStr = Field(None, alias="ErrCode")
    err_message: LooseStr = Field(None, alias="ErrMessage")
    # Kept raw: each entry is validated on its own so one bad job cannot sink a page.
    dts_job_list: Annotated[list[Any], BeforeValidator(loose_list)] = Field(
        default_factory=list, alias="DtsJobList"
    )


def job_type_of(raw: str | None, asked: str) -> str:
    """Our name of a job type (`sync`, `migration`, `subscribe`) from what DTS said, else
    the type the listing asked for."""
    if raw is not None and (name := JOB_TYPE_NAMES.get(raw.strip().lower())) is not None:
        return name
    return asked


def delay_seconds(delay: float | None, job_type: str) -> int | None:
    """Whole seconds: migration jobs report milliseconds, the others seconds."""
    if delay is None or delay < 0:
        return None
    return int(delay // 1000) if job_type == "migration" else int(delay)


def to_jobs(
    entry: DtsJobEntry, region: str, asked: str, account: str = DEFAULT_ACCOUNT
) -> list[JobState]:
    """The job of an entry, and its reverse half when it has one. Requires `dts_job_id`."""
    job_type = job_type_of(entry.job_type, asked)
    forward = _job(entry, entry, region, job_type, account, "Forward")
    reverse = entry.reverse_job
    if reverse is None:
        return [forward]
    return [forward, _job(reverse, entry, region, job_type, account, "Reverse")]


def _job(
    record: DtsJobRecord,
    parent: DtsJobRecord,
    region: str,
    job_type: str,
    account: str,
    default_direction: str,
) -> JobState:
    """`record` normalized; what a reverse half leaves out is its parent's."""
    delay = record.delay
    if delay is None and record.data_synchronization_status is not None:
        delay = record.data_synchronization_status.delay
    performance = record.performance
    return JobState(
        region=region,
        job_id=record.dts_job_id or parent.dts_job_id or "",
        direction=direction(record.dts_job_direction)
        if record.dts_job_direction
        else default_direction,
        job_name=record.dts_job_name or parent.dts_job_name or "",
        status=normalize_status(record.status),
        account=account,
        job_type=job_type,
        error_message=record.error_message,
        delay_seconds=delay_seconds(delay, job_type),
        checkpoint=record.checkpoint,
        instance_id=record.dts_instance_id or parent.dts_instance_id,
        retry=_retry(record.retry_state),
        error_details=tuple(
            ErrorDetail(d.error_code, d.help_url)
            for d in record.error_details
            if d.error_code or d.help_url
        ),
        pay_type=record.pay_type or parent.pay_type,
        job_class=record.dts_job_class or parent.dts_job_class,
        precheck=_precheck(record.precheck_status),
        structure_init=stage(record.structure_initialization_status),
        data_init=stage(record.data_initialization_status),
        source=endpoint(record.source_endpoint),
        destination=endpoint(record.destination_endpoint),
        rps=performance.rps if performance else None,
        flow_mbps=performance.flow if performance else None,
        # A tag key is unique per resource; if a response repeats one, the last wins.
        tags=tuple(sorted({t.key: t.value or "" for t in parent.tag_list if t.key}.items())),
        create_time=record.create_time or parent.create_time,
        expire_time=record.expire_time or parent.expire_time,
    )


def _retry(model: DtsRetryState | None) -> RetryState | None:
    if model is None or all(value is None for value in model.model_dump().values()):
        return None
    return RetryState(
        retrying=model.retrying,
        count=model.retry_count,
        retry_seconds=model.retry_time,
        max_retry_seconds=model.max_retry_time,
        target=model.retry_target,
        module=model.module,
        error_message=model.err_message,
    )


def _precheck(model: DtsPrecheckStatus | None) -> Precheck | None:
    if model is None:
        return None
    items = tuple(
        PrecheckItem(
            item_name=item.check_item or "",
            status=title(item.check_result) or "Unknown",
            error_message=item.failed_reason,
            repair_method=item.repair_method,
        )
        for item in model.detail
    )
    return Precheck(status=title(model.status), percent=model.percent, items=items)


def parse_dts_jobs_page(
    body: dict[str, Any],
    region: str,
    asked: str,
    account: str = DEFAULT_ACCOUNT,
    keep: Any = None,
    cache: JobCache | None = None,
) -> PageParse:
    """Parse one decoded DescribeDtsJobs body (a listing of job type `asked`).

    With a `cache` (see JobCache, keyed by `DTS_JOBS_KEYS`), an unchanged entry gives the
    very jobs it gave last time.

    Entries without a `DtsJobId` are skipped and counted. `keep(job)`, if given, says
    which jobs to keep (the name and tag filters, applied here: the listing itself, and
    so its counts, stays whole). Raises ApiRefusal for a body with `Success` false.
    """
    response = DescribeDtsJobsResponse.model_validate(body)
    if response.success is False:
        raise ApiRefusal(
            response.err_code or "Unsuccessful",
            response.err_message or "DescribeDtsJobs answered Success false",
        )
    jobs: list[JobState] = []
    skipped = 0
    for raw in response.dts_job_list:
        if not isinstance(raw, dict):
            skipped += 1
            continue
        found: tuple[JobState, ...] | None = None
        if cache is not None:
            key, fingerprint, found = cache.reuse(raw)
        if found is None:
            entry = DtsJobEntry.model_validate(raw)
            if not entry.dts_job_id:
                skipped += 1
                continue
            found = tuple([shared(job) for job in to_jobs(entry, region, asked, account)])
            if cache is not None:
                if (previous := cache.previous.get(key)) is not None and len(previous[1]) == len(
                    found
                ):
                    found = tuple(
                        job.sharing_body(old) for job, old in zip(found, previous[1], strict=True)
                    )
                cache.remember(key, fingerprint, found)
        jobs.extend(j for j in found if keep is None or keep(j))
    return PageParse(
        request_id=response.request_id,
        page_number=response.page_number,
        total_record_count=response.total_record_count,
        jobs=tuple(jobs),
        raw_count=len(response.dts_job_list),
        skipped=skipped,
    )
