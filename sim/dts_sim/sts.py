"""STS `AssumeRole` (API 2015-04-01), as far as a watcher of several accounts needs it.

Signed like any call (ACS3-HMAC-SHA256, checked by `auth.py` first), with `RoleArn`,
`RoleSessionName` and `DurationSeconds` (900 to 43200, default 3600). A role of an
account the simulator knows (`accounts.role_arn`) is assumed by any known key and gives
a temporary key of that account; any other ARN is answered as STS does:

    RoleArn missing or not an ARN        400 InvalidParameter.RoleArn
    DurationSeconds out of range         400 InvalidParameter.DurationSeconds
    RoleSessionName missing              400 MissingRoleSessionName
    a role nobody has                    404 EntityNotExist.Role
    a role the caller may not assume     403 NoPermission (`Simulator.deny_role`)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

from dts_sim.api import ApiError, Response, new_request_id
from dts_sim.auth import Authenticator
from dts_sim.render import json_bytes, utc_text

__all__ = ["STS_ACTION", "STS_VERSION", "assume_role"]

STS_ACTION = "AssumeRole"
STS_VERSION = "2015-04-01"


def assume_role(
    params: Mapping[str, str],
    roles: Mapping[str, str],
    denied: Collection[str],
    auth: Authenticator,
    now: datetime,
) -> Response:
    """The answer to an authenticated AssumeRole call (`roles`: ARN -> account)."""
    arn = params.get("RoleArn", "")
    if not arn.startswith("acs:ram::"):
        raise ApiError(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrong.")
    raw = params.get("DurationSeconds") or "3600"
    if not raw.isdigit() or not 900 <= int(raw) <= 43200:
        raise ApiError(
            400, "InvalidParameter.DurationSeconds", "The parameter DurationSeconds is wrong."
        )
    session = params.get("RoleSessionName", "")
    if not session:
        raise ApiError(400, "MissingRoleSessionName", "RoleSessionName is mandatory.")
    account = roles.get(arn)
    if account is None:
        raise ApiError(404, "EntityNotExist.Role", f"The role not exists: {arn}.")
    if arn in denied:
        raise ApiError(
            403,
            "NoPermission",
            "You are not authorized to do this action. You should be authorized by RAM.",
        )
    expires = now + timedelta(seconds=int(raw))
    key_id, secret, token = auth.issue(account, expires)
    return Response(
        200,
        json_bytes(
            {
                "RequestId": new_request_id(),
                "AssumedRoleUser": {
                    "Arn": f"{arn.replace(':role/', ':assumed-role/')}/{session}",
                    "AssumedRoleId": f"3{key_id[-8:]}:{session}",
                },
                "Credentials": {
                    "AccessKeyId": key_id,
                    "AccessKeySecret": secret,
                    "SecurityToken": token,
                    "Expiration": utc_text(expires),
                },
            }
        ),
    )
