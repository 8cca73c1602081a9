"""The API calls the simulator serves, DescribeSynchronizationJobs and DescribeDtsJobs
(and STS AssumeRole, `sts.py`): what they accept, and how they say no (DTS's HTTP status,
`Code` and message, in DTS's error body).

Checked after authentication (`auth.py`), in this order:

    x-acs-action neither of the two              400 InvalidAction.NotFound
    x-acs-version not 2020-01-01                 400 InvalidVersion
    PageSize / PageNum / Tag.N.* invalid         400 InvalidParameter (legacy)
    PageSize / PageNumber / JobType invalid      400 InvalidParameter (DescribeDtsJobs;
                                                 JobType defaults to MIGRATION)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from dts_sim.render import DTS_JOBS_ACTION, Filters, json_bytes
from watcher.dts.signing import API_VERSION

__all__ = [
    "ACTION",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_REGION",
    "DTS_JOBS_ACTION",
    "PAGE_SIZES",
    "ApiError",
    "Response",
    "check_call",
    "dts_filters_of",
    "dts_job_type",
    "dts_page_size",
    "error_response",
    "filters_of",
    "new_request_id",
    "page_num",
    "page_size",
    "request_params",
    "tag_filters",
]

ACTION = "DescribeSynchronizationJobs"
DEFAULT_REGION = "cn-hangzhou"
PAGE_SIZES = (10, 20, 30)
DEFAULT_PAGE_SIZE = 30
_MAX_INT = 2**31 - 1
_TAG_PARAM = re.compile(r"^Tag\.(\d+)\.(Key|Value)$")


class ApiError(Exception):
    """A request DTS would refuse: the HTTP status, `Code` and `Message` it answers with."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(slots=True)
class Response:
    """An answer, ready to send (the HTTP plumbing adds Content-Type and Content-Length)."""

    status: int
    body: bytes
    content_type: str = "application/json;charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def new_request_id() -> str:
    """A RequestId in DTS's form: an upper-case UUID."""
    return str(uuid.uuid4()).upper()


def error_response(err: ApiError, request_id: str, host_id: str) -> Response:
    """DTS's error body for `err`."""
    return Response(
        status=err.status,
        body=json_bytes(
            {
                "RequestId": request_id,
                "HostId": host_id,
                "Code": err.code,
                "Message": err.message,
                "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Dts",
            }
        ),
        headers=err.headers,
    )


def request_params(
    query_params: Mapping[str, str], headers: Mapping[str, str], body: bytes
) -> dict[str, str]:
    """The call's parameters: the query's, then a form-encoded body's on top."""
    params = dict(query_params)
    content_type = headers.get("content-type", "")
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def check_call(headers: Mapping[str, str]) -> str:
    """The action and API version the request names (headers already known present);
    returns the action."""
    if headers["x-acs-action"] not in (ACTION, DTS_JOBS_ACTION):
        raise ApiError(
            400,
            "InvalidAction.NotFound",
            f"Specified api {headers['x-acs-action']} is not found, please check your url"
            " and method.",
        )
    if headers["x-acs-version"] != API_VERSION:
        raise ApiError(
            400,
            "InvalidVersion",
            f"Specified parameter Version {headers['x-acs-version']} is not valid.",
        )
    return headers["x-acs-action"]


DTS_JOBS_DEFAULT_PAGE_SIZE = 20  # the SDK's documented default
JOB_TYPE_PARAMS = {"MIGRATION": "migration", "SYNC": "sync", "SUBSCRIBE": "subscribe"}


def dts_page_size(raw: str | None, largest: int) -> int:
    """DescribeDtsJobs' PageSize: 1 to `largest` (the simulator's `max_page_size`)."""
    if raw is None or raw == "":
        return DTS_JOBS_DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= largest:
        raise ApiError(
            400,
            "InvalidParameter",
            f"The parameter PageSize {raw!r} is invalid; the maximum value is {largest}.",
        )
    return int(raw)


def dts_job_type(raw: str | None) -> str:
    """JobType: MIGRATION when absent, as DTS does; our name of the type."""
    if raw is None or raw == "":
        return "migration"
    found = JOB_TYPE_PARAMS.get(raw.upper())
    if found is None:
        raise ApiError(
            400,
            "InvalidParameter",
            f"The parameter JobType {raw!r} is invalid; valid values are MIGRATION, SYNC and"
            " SUBSCRIBE.",
        )
    return found


def page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise ApiError(
            400,
            "InvalidParameter",
            f"The parameter PageSize {raw!r} is invalid; valid values are 10, 20 and 30.",
        )
    return int(raw)


def page_num(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_INT:
        raise ApiError(
            400,
            "InvalidParameter",
            f"The parameter PageNum {raw!r} is invalid; it must be a positive integer.",
        )
    return int(raw)


def tag_filters(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Tag.N.Key / Tag.N.Value pairs; a value that is not sent matches any value."""
    keys: dict[int, str] = {}
    values: dict[int, str] = {}
    for name, value in params.items():
        match = _TAG_PARAM.match(name)
        if not match:
            continue
        n = int(match.group(1))
        if not 1 <= n <= 20:
            raise ApiError(400, "InvalidParameter", f"The parameter {name} is invalid: N is 1-20.")
        (keys if match.group(2) == "Key" else values)[n] = value
    for n in values:
        if n not in keys:
            raise ApiError(400, "InvalidParameter", f"Tag.{n}.Value was sent without Tag.{n}.Key.")
    for n, key in keys.items():
        if key == "":
            raise ApiError(400, "InvalidParameter", f"Tag.{n}.Key cannot be an empty string.")
    return [(keys[n], values.get(n)) for n in sorted(keys)]


def filters_of(
    region: str,
    params: Mapping[str, str],
    tags: list[tuple[str, str | None]],
    account: str = "default",
) -> Filters:
    """The listing filters a legacy call asks for (empty values are no filter)."""
    return Filters(
        region,
        params.get("SynchronizationJobName") or None,
        tuple(tags),
        params.get("ResourceGroupId") or None,
        account,
    )


def dts_filters_of(region: str, params: Mapping[str, str], account: str) -> Filters:
    """The listing a DescribeDtsJobs call asks for (its job type, resource group)."""
    return Filters(
        region,
        resource_group=params.get("ResourceGroupId") or None,
        account=account,
        api=DTS_JOBS_ACTION,
        job_type=dts_job_type(params.get("JobType")),
    )
