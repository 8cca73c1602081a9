"""What DescribeSynchronizationJobs answers: a job's JSON, a page's body, its bytes.

`job_to_api` fills in realistic values for every field the reference documents (precheck
items, endpoints, objects, times) that a scenario leaves out, and applies the optional
"quirks" that reproduce the variations real responses show, so clients can be tested
against them. `page_body` wraps a page of jobs.

How the simulator turns a request into a page's bytes is a seam (`PageSource`):
`render_page` is the plain way, selecting and rendering on every request. The benchmarks,
which serve 10,000 jobs every few seconds, plug in a caching one (benchmarks/simcache.py)
that must produce the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from dts_sim.jobs import (
    DEFAULT_PRECHECK_ITEMS,
    STAGE_STATUSES,
    JobSpec,
    ObjectSpec,
    PrecheckItemSpec,
    PrecheckSpec,
    StageSpec,
)

if TYPE_CHECKING:
    from dts_sim.timeline import ScenarioState

__all__ = [
    "BASE_CREATED",
    "DTS_JOBS_ACTION",
    "LEGACY_ACTION",
    "Filters",
    "PageSource",
    "display_name",
    "job_to_api",
    "json_bytes",
    "page_body",
    "render_page",
    "utc_text",
]

# Deterministic "now" for jobs that do not say when they were created.
BASE_CREATED = datetime(2024, 3, 1, 2, 0, 0, tzinfo=UTC)
_BEIJING = timezone(timedelta(hours=8))

# Error texts used when a job is in an error status and the scenario gave none.
_DEFAULT_ERRORS = {
    "Failed": (
        "DTS-070211: Connect Source DB failed. cause by [com.mysql.jdbc.exceptions.jdbc4."
        "CommunicationsException:Communications link failure]"
    ),
    "InitializeFailed": 'DTS-1020042 Execute sql error sql: ERROR: type "geometry" does not exist;',
    "PrecheckFailed": "Original error: Access denied for user 'dtstest'@'100.104.***.**'"
    " (using password: YES)",
}


def json_bytes(data: Any) -> bytes:
    """How the simulator writes JSON: UTF-8, non-ASCII as is, json's default separators."""
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------
# One job
# --------------------------------------------------------------------------------------


def display_name(job: JobSpec) -> str:
    return job.name if job.name is not None else f"sync {job.id}"


def _num(value: float | int) -> str:
    """How DTS writes numbers in strings: "100", "0.5"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _beijing(moment: datetime) -> str:
    return moment.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S.0")


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _endpoint(job: JobSpec, side: str) -> dict[str, Any]:
    """SourceEndpoint / DestinationEndpoint: what the scenario gave, the rest derived."""
    given = job.source if side == "source" else job.destination
    # Derived from the id, so they are stable; a Reverse job runs from the Forward job's
    # destination back to its source.
    origin = side
    if job.direction == "Reverse":
        origin = "destination" if side == "source" else "source"
    d = _digest(f"{job.id}:{origin}")
    out = {
        "InstanceId": f"rm-bp{d[:6].hex()}{'s' if origin == 'source' else 'd'}",
        "IP": f"172.16.{d[6] % 250 + 1}.{d[7] % 250 + 1}",
        "InstanceType": "RDS",
        "Port": "3306",
        "UserName": "dtstest",
        "EngineName": "MySQL",
    }
    if given is not None:
        for key, value in (
            ("InstanceId", given.instance_id),
            ("IP", given.ip),
            ("InstanceType", given.instance_type),
            ("Port", None if given.port is None else str(given.port)),
            ("UserName", given.user),
            ("EngineName", given.engine),
        ):
            if value is not None:
                out[key] = value
    return out


def _objects(job: JobSpec) -> list[ObjectSpec]:
    if job.objects is not None:
        return job.objects
    base = job.id.removeprefix("dts")[:12] or "app"
    return [ObjectSpec(schema_name=f"{base}_db", new_schema=f"{base}_db", include=[], exclude=[])]


# Built once: constructing validated models for every default of every job is slow.
_STAGES = {status: StageSpec(status=status) for status in STAGE_STATUSES}
_SUCCESS_ITEMS = [PrecheckItemSpec(name=name) for name in DEFAULT_PRECHECK_ITEMS]
_PRECHECK_SUCCESS = PrecheckSpec(status="Success", percent=100)
_PRECHECK_NOT_STARTED = PrecheckSpec(status="NotStarted", percent=0, items=[])
_PRECHECK_RUNNING = PrecheckSpec(
    status="Prechecking", percent=50, items=_SUCCESS_ITEMS[: len(_SUCCESS_ITEMS) // 2]
)


def _auto_precheck(job: JobSpec) -> PrecheckSpec:
    if job.status == "NotStarted":
        return _PRECHECK_NOT_STARTED
    if job.status == "Prechecking":
        return _PRECHECK_RUNNING
    if job.status == "PrecheckFailed":
        items = list(_SUCCESS_ITEMS)
        items[1] = PrecheckItemSpec(
            name=DEFAULT_PRECHECK_ITEMS[1],
            status="Failed",
            error_message=job.error_message or _DEFAULT_ERRORS["PrecheckFailed"],
            repair_method="CHECK_ERROR_SRC_AUTH_REPAIR",
        )
        return PrecheckSpec(status="Failed", percent=100, items=items)
    return _PRECHECK_SUCCESS


def _auto_stage(job: JobSpec, stage: str) -> StageSpec:
    enabled = job.structure_initialization if stage == "structure" else job.data_initialization
    status = job.status
    if not enabled or status in ("NotStarted", "Prechecking", "PrecheckFailed"):
        return _STAGES["NotStarted"]
    if status == "Initializating":
        return _STAGES["Finished" if stage == "structure" else "Migrating"]
    if status == "InitializeFailed":
        if stage == "structure":
            return StageSpec(
                status="Failed",
                error_message=job.error_message or _DEFAULT_ERRORS["InitializeFailed"],
            )
        return _STAGES["NotStarted"]
    return _STAGES["Finished"]


_STAGE_PERCENT = {"NotStarted": 0.0, "Migrating": 50.0, "Failed": 30.0, "Finished": 100.0}


def _stage_json(spec: StageSpec, stage: str, job: JobSpec) -> dict[str, Any]:
    percent = spec.percent if spec.percent is not None else _STAGE_PERCENT[spec.status]
    if spec.progress is not None:
        progress = spec.progress
    else:
        full = (
            sum(max(1, len(o.include)) for o in _objects(job)) if stage == "structure" else 200_001
        )
        progress = int(full * percent / 100)
    out: dict[str, Any] = {
        "Status": spec.status,
        "Percent": _num(percent),
        "Progress": str(progress),
    }
    if spec.error_message:
        out["ErrorMessage"] = spec.error_message
    return out


def job_to_api(
    job: JobSpec,
    quirks: Iterable[str] = (),
    created: datetime | None = None,
    delay: int | None = None,
) -> dict[str, Any]:
    """One SynchronizationInstances entry, as DescribeSynchronizationJobs serves it.

    `quirks` are the scenario-wide ones; the job's own are added to them. `created` is
    used when the job does not say when it was created, `delay` instead of the job's
    own (a stalled job's grows with the clock); ScenarioState knows both.
    """
    q = set(quirks) | set(job.quirks)
    created = job.created or created or BASE_CREATED
    error = job.error_message
    if error is None and job.status in ("Failed", "InitializeFailed"):
        error = _DEFAULT_ERRORS[job.status]
    running = job.status in ("Synchronizing", "Modifying")
    rps = job.rps if job.rps is not None else (100.0 if running else 0.0)
    flow = job.flow if job.flow is not None else (0.52 if running else 0.0)
    precheck = job.precheck if job.precheck is not None else _auto_precheck(job)
    structure = job.structure_init or _auto_stage(job, "structure")
    data = job.data_init or _auto_stage(job, "data")

    out: dict[str, Any] = {
        "SynchronizationJobId": job.id,
        "SynchronizationJobName": display_name(job),
        "SynchronizationDirection": job.direction,
        "Status": job.status,
        "Delay": str(job.delay if delay is None else delay),
    }
    if error:
        out["ErrorMessage"] = error
    _add_billing(out, job, created)
    out["SynchronizationObjects"] = [
        {
            "SchemaName": o.schema_name,
            "NewSchemaName": o.new_schema or o.schema_name,
            "TableIncludes": [{"TableName": t} for t in o.include],
            "TableExcludes": [{"TableName": t} for t in o.exclude],
        }
        for o in _objects(job)
    ]
    out["StructureInitializationStatus"] = _stage_json(structure, "structure", job)
    out["DataInitializationStatus"] = _stage_json(data, "data", job)
    out["DataSynchronizationStatus"] = {}  # documented as no longer available
    out["SourceEndpoint"] = _endpoint(job, "source")
    out["DestinationEndpoint"] = _endpoint(job, "destination")
    out["Performance"] = {"RPS": _num(rps), "FLOW": f"{flow:.2f}MB/s"}
    out["PrecheckStatus"] = _precheck_json(precheck)
    return _apply_quirks(out, q)


def _add_billing(out: dict[str, Any], job: JobSpec, created: datetime) -> None:
    """Pay type, creation and expiry times, class, initialization flags, group, tags."""
    out.update(
        {
            "PayType": job.pay_type,
            "CreateTime": _beijing(created),
            "JobCreateTime": utc_text(created),
            "InstanceCreateTime": utc_text(created + timedelta(seconds=99)),
            "SynchronizationJobClass": job.job_class,
            "StructureInitialization": job.structure_initialization,
            "DataInitialization": job.data_initialization,
        }
    )
    if job.pay_type == "PrePaid":
        out["ExpireTime"] = utc_text(job.expire_time or created + timedelta(days=365))
    elif job.expire_time is not None:
        out["ExpireTime"] = utc_text(job.expire_time)
    if job.resource_group:
        out["ResourceGroupId"] = job.resource_group
    out["Tags"] = [{"Key": k, "Value": v} for k, v in job.tags.items()]


def _precheck_json(precheck: PrecheckSpec) -> dict[str, Any]:
    items = precheck.items if precheck.items is not None else _SUCCESS_ITEMS
    percent = precheck.percent
    if percent is None:
        percent = 0.0 if precheck.status in ("NotStarted",) else 100.0
    detail = []
    for item in items:
        entry = {"CheckStatus": item.status, "ItemName": item.name}
        if item.error_message:
            entry["ErrorMessage"] = item.error_message
        if item.repair_method:
            entry["RepairMethod"] = item.repair_method
        detail.append(entry)
    return {"Status": precheck.status, "Percent": _num(percent), "Detail": detail}


def _apply_quirks(out: dict[str, Any], q: set[str]) -> dict[str, Any]:
    if "lowercase_status" in q:
        out["Status"] = out["Status"].lower()
    if "strings_for_bools" in q:
        for key in ("StructureInitialization", "DataInitialization"):
            out[key] = "true" if out[key] else "false"
    if "numbers_as_json" in q:
        out["Delay"] = int(out["Delay"])
        for key in ("StructureInitializationStatus", "DataInitializationStatus"):
            out[key]["Percent"] = _json_number(out[key]["Percent"])
            out[key]["Progress"] = int(out[key]["Progress"])
        for key in ("SourceEndpoint", "DestinationEndpoint"):
            out[key]["Port"] = int(out[key]["Port"])
        perf = out["Performance"]
        perf["RPS"] = _json_number(perf["RPS"])
        perf["FLOW"] = _json_number(perf["FLOW"].removesuffix("MB/s"))
        out["PrecheckStatus"]["Percent"] = _json_number(out["PrecheckStatus"]["Percent"])
    if "empty_strings" in q:
        out.setdefault("ErrorMessage", "")
        out.setdefault("ExpireTime", "")
        out.setdefault("ResourceGroupId", "")
        for key in ("StructureInitializationStatus", "DataInitializationStatus"):
            out[key].setdefault("ErrorMessage", "")
        for entry in out["PrecheckStatus"]["Detail"]:
            entry.setdefault("ErrorMessage", "")
            entry.setdefault("RepairMethod", "")
    if "wrapped_lists" in q:
        out["Tags"] = {"Tag": out["Tags"]}
        for obj in out["SynchronizationObjects"]:
            obj["TableIncludes"] = {"TableInclude": obj["TableIncludes"]}
            obj["TableExcludes"] = {"TableExclude": obj["TableExcludes"]}
        out["SynchronizationObjects"] = {"SynchronizationObject": out["SynchronizationObjects"]}
        out["PrecheckStatus"]["Detail"] = {"Detail": out["PrecheckStatus"]["Detail"]}
    if "extra_fields" in q:
        out["DtsInstanceID"] = f"{out['SynchronizationJobId']}i"
        out["Reserved"] = '{"srcHostPorts":"","destHostPorts":""}'
        out["EtlSafeCheckpoint"] = None
        out["PrecheckStatus"]["Reserved"] = {}
    if "omit_precheck" in q:
        del out["PrecheckStatus"]
    if "omit_performance" in q:
        del out["Performance"]
    if "lowercase_keys" in q:
        return _lower_keys(out)  # type: ignore[no-any-return]
    return out


def _json_number(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() else number


def _lower_keys(value: Any) -> Any:
    """camelCase every key, recursively ("SynchronizationJobId" -> "synchronizationJobId")."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# One page
# --------------------------------------------------------------------------------------


def page_body(
    jobs_on_page: Iterable[JobSpec],
    *,
    total: int,
    page_number: int,
    request_id: str,
    quirks: Iterable[str] = (),
    render: Callable[[JobSpec], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A whole successful response body for one page.

    `render` turns a job into its JSON (default: `job_to_api` with `quirks`); the server
    passes `ScenarioState.render`, which knows each job's creation time.
    """
    scenario_quirks = set(quirks)
    if render is None:
        instances: Any = [job_to_api(job, scenario_quirks) for job in jobs_on_page]
    else:
        instances = [render(job) for job in jobs_on_page]
    count = len(instances)
    if "wrapped_lists" in scenario_quirks:
        instances = {"SynchronizationInstance": instances}
    return {
        "TotalRecordCount": total,
        "PageNumber": page_number,
        "PageRecordCount": count,
        "RequestId": request_id,
        "SynchronizationInstances": instances,
    }


LEGACY_ACTION = "DescribeSynchronizationJobs"
DTS_JOBS_ACTION = "DescribeDtsJobs"


class Filters(NamedTuple):
    """What a listing call asks for, besides the page: whose jobs (the caller's account),
    which listing (`api`, and DescribeDtsJobs' `job_type`), and its filters."""

    region: str
    name: str | None = None  # SynchronizationJobName (a case-insensitive substring)
    tags: tuple[tuple[str, str | None], ...] = ()  # Tag.N.Key / Tag.N.Value (None: any)
    resource_group: str | None = None
    account: str = "default"
    api: str = LEGACY_ACTION
    job_type: str = "sync"  # the legacy listing shows synchronization jobs only


class PageSource(Protocol):
    """How the simulator produces a successful page's body (the `pages` seam).

    Called with the simulator's lock held, so the state does not change meanwhile, for a
    request that passed every check. Must return exactly what `render_page` returns.
    """

    def __call__(
        self,
        state: ScenarioState,
        filters: Filters,
        page: int,
        page_size: int,
        request_id: str,
    ) -> bytes: ...


def render_page(
    state: ScenarioState,
    filters: Filters,
    page: int,
    page_size: int,
    request_id: str,
) -> bytes:
    """A page's body, selected and rendered afresh: the simulator's default `PageSource`."""
    selected = state.select_for(filters)
    start = (page - 1) * page_size
    if filters.api == DTS_JOBS_ACTION:
        from dts_sim.render_dtsjobs import dts_entries, dts_page_body

        entries = dts_entries(selected)
        return json_bytes(
            dts_page_body(
                entries[start : start + page_size],
                total=len(entries),
                page_number=page,
                request_id=request_id,
                render=state.render_dts,
            )
        )
    payload = page_body(
        selected[start : start + page_size],
        total=len(selected),
        page_number=page,
        request_id=request_id,
        quirks=state.scenario.quirks,
        render=state.render,
    )
    return json_bytes(payload)
