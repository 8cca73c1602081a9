"""Response models for DescribeSynchronizationJobs, and their normalization into JobState.

Real responses stray from the reference in many small ways, and every one of them must be
taken, not crashed on:

- key letter case varies (`Status`, `status`), so keys are matched case-insensitively;
- numbers and booleans arrive as JSON values, as strings, or as empty strings;
- lists arrive bare, wrapped XML-style (`{"Detail": [...]}`), or as a single object;
- whole objects go missing (PrecheckStatus, Performance, ExpireTime only for PrePaid);
- values carry units (`"FLOW": "0.00MB/s"`, `"Percent": "100%"`);
- statuses come in any letter case, and new ones appear (kept verbatim);
- unknown fields appear (ignored).

A value that cannot be understood becomes None rather than an error: one odd field must
not hide a job's status change. A record we cannot turn into a job (not an object, no id
or an id that is not text, a direction that is not text, anything the models choke on)
is the one thing we cannot use; it is skipped by `parse_page` and counted, not guessed
at, and the client then lets that listing prove no job absent (it may be the one).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from watcher.dts.record_cache import JobCache
from watcher.sharing import shared
from watcher.snapshot import (
    DEFAULT_ACCOUNT,
    Endpoint,
    InitStage,
    JobState,
    Precheck,
    PrecheckItem,
    SyncObject,
    normalize_status,
)

_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
# CreateTime is documented as "yyyy-MM-dd HH:mm:ss.0" in UTC+8 (Beijing time).
_BEIJING = timezone(timedelta(hours=8))


def loose_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def loose_float(value: Any) -> float | None:
    """A finite float, or None: NaN, infinities and numbers too big for a float included."""
    if type(value) is str and value.isascii() and value.isdigit():
        number = float(value)  # most of DTS's numbers: digits in a string ("12")
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and (match := _NUMBER.match(value)):
            number = float(match.group(1))
        else:
            return None
    except OverflowError:  # an integer with hundreds of digits
        return None
    return number if math.isfinite(number) else None


def loose_int(value: Any) -> int | None:
    number = loose_float(value)
    return None if number is None else int(number)


def loose_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def loose_time(value: Any) -> datetime | None:
    """An aware datetime from the API's formats; naive "yyyy-MM-dd HH:mm:ss" is UTC+8."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value  # epoch milliseconds or seconds
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = loose_str(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_BEIJING)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the range by the offset
        return None


def loose_list(value: Any) -> list[Any]:
    """A list from a bare list, an XML-style wrapper object, a single object, or nothing."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if len(value) == 1:
            (inner,) = value.values()
            if isinstance(inner, list):
                return inner
            if isinstance(inner, dict):  # a wrapper around a single item
                return [inner]
        return [value] if value else []
    return []


def _loose_object(value: Any) -> Any:
    """Missing or malformed nested objects become None (the model then uses defaults)."""
    if isinstance(value, dict):
        return value
    return None


LooseStr = Annotated[str | None, BeforeValidator(loose_str)]
LooseInt = Annotated[int | None, BeforeValidator(loose_int)]
LooseFloat = Annotated[float | None, BeforeValidator(loose_float)]
LooseBool = Annotated[bool | None, BeforeValidator(loose_bool)]
LooseTime = Annotated[datetime | None, BeforeValidator(loose_time)]


class ApiModel(BaseModel):
    """Base for response models: API field names, matched in any letter case."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)
    _aliases: ClassVar[dict[str, str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._aliases = {}

    @model_validator(mode="before")
    @classmethod
    def _match_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        aliases = cls._aliases
        if not aliases:
            for name, info in cls.model_fields.items():
                alias = info.alias or name
                aliases[alias.lower()] = alias
        out: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                continue
            target = aliases.get(key.lower())
            # The exact spelling wins over a differently-cased duplicate.
            if target is not None and (target not in out or key == target):
                out[target] = value
        return out


def _dict_items(value: Any) -> list[Any]:
    return [item for item in loose_list(value) if isinstance(item, dict)]


_M = TypeVar("_M", bound=ApiModel)
# A list of objects however it was wrapped, and an object that may be missing or malformed.
LooseList = Annotated[list[_M], BeforeValidator(_dict_items)]
LooseObject = Annotated[_M | None, BeforeValidator(_loose_object)]


class Tag(ApiModel):
    key: LooseStr = Field(None, alias="Key")
    value: LooseStr = Field(None, alias="Value")


class TableName(ApiModel):
    table_name: LooseStr = Field(None, alias="TableName")


class SynchronizationObject(ApiModel):
    schema_name: LooseStr = Field(None, alias="SchemaName")
    new_schema_name: LooseStr = Field(None, alias="NewSchemaName")
    table_includes: LooseList[TableName] = Field(default_factory=list, alias="TableIncludes")
    table_excludes: LooseList[TableName] = Field(default_factory=list, alias="TableExcludes")


class InitializationStatus(ApiModel):
    """StructureInitializationStatus and DataInitializationStatus share this shape."""

    status: LooseStr = Field(None, alias="Status")
    percent: LooseFloat = Field(None, alias="Percent")
    progress: LooseInt = Field(None, alias="Progress")
    error_message: LooseStr = Field(None, alias="ErrorMessage")


class DataSynchronizationStatus(ApiModel):
    """Documented as no longer available; read when present, never relied on."""

    status: LooseStr = Field(None, alias="Status")
    delay: LooseInt = Field(None, alias="Delay")
    percent: LooseFloat = Field(None, alias="Percent")
    error_message: LooseStr = Field(None, alias="ErrorMessage")


class EndpointModel(ApiModel):
    """SourceEndpoint / DestinationEndpoint of either API (keys match in any case:
    `InstanceId` and `InstanceID`, `IP` and `Ip`)."""

    instance_id: LooseStr = Field(None, alias="InstanceId")
    ip: LooseStr = Field(None, alias="IP")
    instance_type: LooseStr = Field(None, alias="InstanceType")
    port: LooseInt = Field(None, alias="Port")
    user_name: LooseStr = Field(None, alias="UserName")
    engine_name: LooseStr = Field(None, alias="EngineName")


class Performance(ApiModel):
    """Performance of either API (`RPS`/`FLOW`, `Rps`/`Flow`)."""

    rps: LooseFloat = Field(None, alias="RPS")
    flow: LooseFloat = Field(None, alias="FLOW")


class CheckItem(ApiModel):
    check_status: LooseStr = Field(None, alias="CheckStatus")
    error_message: LooseStr = Field(None, alias="ErrorMessage")
    item_name: LooseStr = Field(None, alias="ItemName")
    repair_method: LooseStr = Field(None, alias="RepairMethod")


class PrecheckStatus(ApiModel):
    status: LooseStr = Field(None, alias="Status")
    percent: LooseFloat = Field(None, alias="Percent")
    detail: LooseList[CheckItem] = Field(default_factory=list, alias="Detail")


class SynchronizationInstance(ApiModel):
    synchronization_job_id: LooseStr = Field(None, alias="SynchronizationJobId")
    synchronization_job_name: LooseStr = Field(None, alias="SynchronizationJobName")
    synchronization_direction: LooseStr = Field(None, alias="SynchronizationDirection")
    status: LooseStr = Field(None, alias="Status")
    delay: LooseFloat = Field(None, alias="Delay")
    error_message: LooseStr = Field(None, alias="ErrorMessage")
    data_initialization: LooseBool = Field(None, alias="DataInitialization")
    structure_initialization: LooseBool = Field(None, alias="StructureInitialization")
    expire_time: LooseTime = Field(None, alias="ExpireTime")
    create_time: LooseTime = Field(None, alias="CreateTime")
    pay_type: LooseStr = Field(None, alias="PayType")
    synchronization_job_class: LooseStr = Field(None, alias="SynchronizationJobClass")
    instance_create_time: LooseTime = Field(None, alias="InstanceCreateTime")
    job_create_time: LooseTime = Field(None, alias="JobCreateTime")
    tags: LooseList[Tag] = Field(default_factory=list, alias="Tags")
    synchronization_objects: LooseList[SynchronizationObject] = Field(
        default_factory=list, alias="SynchronizationObjects"
    )
    data_initialization_status: LooseObject[InitializationStatus] = Field(
        None, alias="DataInitializationStatus"
    )
    data_synchronization_status: LooseObject[DataSynchronizationStatus] = Field(
        None, alias="DataSynchronizationStatus"
    )
    structure_initialization_status: LooseObject[InitializationStatus] = Field(
        None, alias="StructureInitializationStatus"
    )
    destination_endpoint: LooseObject[EndpointModel] = Field(None, alias="DestinationEndpoint")
    source_endpoint: LooseObject[EndpointModel] = Field(None, alias="SourceEndpoint")
    performance: LooseObject[Performance] = Field(None, alias="Performance")
    precheck_status: LooseObject[PrecheckStatus] = Field(None, alias="PrecheckStatus")

    def to_job_state(self, region: str, account: str = DEFAULT_ACCOUNT) -> JobState:
        """The normalized job; requires `synchronization_job_id` (see `parse_page`)."""
        job_id = self.synchronization_job_id or ""
        delay = self.delay
        if delay is None and self.data_synchronization_status is not None:
            delay = self.data_synchronization_status.delay
        return JobState(
            region=region,
            job_id=job_id,
            direction=_direction(self.synchronization_direction),
            job_name=self.synchronization_job_name or "",
            status=normalize_status(self.status),
            account=account,
            error_message=self.error_message,
            delay_seconds=int(delay) if delay is not None and delay >= 0 else None,
            pay_type=self.pay_type,
            job_class=self.synchronization_job_class,
            structure_initialization=self.structure_initialization,
            data_initialization=self.data_initialization,
            precheck=_precheck(self.precheck_status),
            structure_init=_stage(self.structure_initialization_status),
            data_init=_stage(self.data_initialization_status),
            source=endpoint(self.source_endpoint),
            destination=endpoint(self.destination_endpoint),
            rps=self.performance.rps if self.performance else None,
            flow_mbps=self.performance.flow if self.performance else None,
            # A tag key is unique per resource; if a response repeats one, the last wins.
            tags=tuple(sorted({t.key: t.value or "" for t in self.tags if t.key}.items())),
            objects=tuple(
                SyncObject(
                    schema_name=o.schema_name,
                    new_schema_name=o.new_schema_name,
                    table_includes=tuple(t.table_name for t in o.table_includes if t.table_name),
                    table_excludes=tuple(t.table_name for t in o.table_excludes if t.table_name),
                )
                for o in self.synchronization_objects
            ),
            create_time=self.create_time,
            job_create_time=self.job_create_time,
            instance_create_time=self.instance_create_time,
            expire_time=self.expire_time,
        )


class DescribeSynchronizationJobsResponse(ApiModel):
    request_id: LooseStr = Field(None, alias="RequestId")
    page_number: LooseInt = Field(None, alias="PageNumber")
    page_record_count: LooseInt = Field(None, alias="PageRecordCount")
    total_record_count: LooseInt = Field(None, alias="TotalRecordCount")
    # Kept raw here: each instance is validated on its own so one bad job cannot sink a page.
    synchronization_instances: Annotated[list[Any], BeforeValidator(loose_list)] = Field(
        default_factory=list, alias="SynchronizationInstances"
    )


class ApiError(ApiModel):
    """The error body DTS sends with a non-2xx status."""

    request_id: LooseStr = Field(None, alias="RequestId")
    host_id: LooseStr = Field(None, alias="HostId")
    code: LooseStr = Field(None, alias="Code")
    message: LooseStr = Field(None, alias="Message")
    recommend: LooseStr = Field(None, alias="Recommend")


def _direction(raw: str | None) -> str:
    if raw is None:
        return "Forward"  # one-way jobs often omit it; Forward is what DTS means then
    lowered = raw.lower()
    if lowered == "forward":
        return "Forward"
    if lowered == "reverse":
        return "Reverse"
    return raw


def _precheck(model: PrecheckStatus | None) -> Precheck | None:
    if model is None:
        return None
    items = tuple(
        PrecheckItem(
            item_name=item.item_name or "",
            status=_title(item.check_status) or "Unknown",
            error_message=item.error_message,
            repair_method=item.repair_method,
        )
        for item in model.detail
    )
    return Precheck(status=_title(model.status), percent=model.percent, items=items)


def _stage(model: InitializationStatus | None) -> InitStage | None:
    if model is None or (model.status is None and model.percent is None):
        return None
    return InitStage(
        status=_title(model.status),
        percent=model.percent,
        progress=model.progress,
        error_message=model.error_message,
    )


def endpoint(model: EndpointModel | None) -> Endpoint | None:
    if model is None:
        return None
    return Endpoint(
        instance_id=model.instance_id,
        instance_type=model.instance_type,
        engine_name=model.engine_name,
        ip=model.ip,
        port=model.port,
        user_name=model.user_name,
    )


_STAGE_WORDS = {
    w.lower(): w for w in ("NotStarted", "Migrating", "Failed", "Finished", "Success", "Catched")
}


def _title(raw: str | None) -> str | None:
    """Stage and check statuses in DTS's spelling, whatever the case; unknown kept as is."""
    if raw is None:
        return None
    return _STAGE_WORDS.get(raw.lower(), raw)


# Shared with the DescribeDtsJobs models (watcher.dts.dtsjobs).
direction, stage, title = _direction, _stage, _title


class PageParse(BaseModel):
    """One page, parsed: the jobs we could use and how many we could not."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    request_id: str | None
    page_number: int | None
    total_record_count: int | None
    jobs: tuple[JobState, ...]
    raw_count: int
    skipped: int


def _job(raw: dict[str, Any], region: str, cache: JobCache | None, account: str) -> JobState | None:
    """The job of one record, or None when the record cannot be one."""
    key: Any = None
    fingerprint: bytes | None = None
    if cache is not None:
        key, fingerprint, cached = cache.reuse(raw)
        if isinstance(cached, JobState):
            return cached
    instance = SynchronizationInstance.model_validate(raw)
    if not instance.synchronization_job_id or _unusable_direction(raw, instance):
        return None
    job = shared(instance.to_job_state(region, account))
    if cache is not None:
        if (previous := cache.previous.get(key)) is not None:
            job = job.sharing_body(previous[1])
        cache.remember(key, fingerprint, job)
    return job


def _unusable_direction(raw: dict[str, Any], instance: SynchronizationInstance) -> bool:
    """A direction that is there but is not text: the record's key would be a guess."""
    if instance.synchronization_direction is not None:
        return False
    given = [
        v for k, v in raw.items() if isinstance(k, str) and k.lower() == "synchronizationdirection"
    ]
    return any(value is not None and value != "" for value in given)


def parse_page(
    body: dict[str, Any],
    region: str,
    cache: JobCache | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> PageParse:
    """Parse one decoded response body; jobs with no id are skipped and counted.

    With a `cache` (see JobCache), unchanged records reuse the JobState parsed last time.
    """
    response = DescribeSynchronizationJobsResponse.model_validate(body)
    jobs: list[JobState] = []
    skipped = 0
    for raw in response.synchronization_instances:
        if not isinstance(raw, dict):
            skipped += 1
            continue
        try:
            job = _job(raw, region, cache, account)
        except Exception:  # one record the models choke on: that record, not the page
            job = None
        if job is None:
            skipped += 1
        else:
            jobs.append(job)
    return PageParse(
        request_id=response.request_id,
        page_number=response.page_number,
        total_record_count=response.total_record_count,
        jobs=tuple(jobs),
        raw_count=len(response.synchronization_instances),
        skipped=skipped,
    )
