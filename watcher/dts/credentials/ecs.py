"""4. The ECS instance RAM role, from the metadata service (IMDSv2 first)."""

from __future__ import annotations

import json
import re
import ssl
from urllib.parse import quote

import httpx

from watcher.dts.credentials.answers import clean, read_answer, temporary
from watcher.dts.credentials.base import Credentials, CredentialsError
from watcher.dts.upstream import safe_code
from watcher.logs import get_logger
from watcher.settings.common import header_safe

log = get_logger("watcher.credentials")

ECS_METADATA_URL = "http://100.100.100.200"
IMDS_TOKEN_TTL = 21600  # seconds; the longest the ECS metadata service allows
_TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path, not a secret
_ROLES_PATH = "/latest/meta-data/ram/security-credentials/"
_TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"
_TOKEN_HEADER = "X-aliyun-ecs-metadata-token"  # noqa: S105 - a header name
# The metadata service answers in milliseconds on ECS; anywhere else nothing answers.
METADATA_TIMEOUT = httpx.Timeout(3.0, connect=1.0)
# A RAM role name: up to 64 letters, digits, '.' and '-' (as RAM documents it).
_ROLE_NAME = re.compile(r"^[A-Za-z0-9.\-]{1,64}$")


class EcsRamRoleProvider:
    """The temporary key of the RAM role attached to this ECS instance.

    IMDSv2 first: a session token from `PUT /latest/api/token`, sent with every read. If
    the service refuses to issue one (an older image, a proxy), plain IMDSv1 reads are
    used unless `imdsv1_disabled`. If nothing answers at all, this is not an ECS instance
    (or the metadata service is blocked) and the error says so, without a second wait.
    """

    def __init__(
        self,
        role_name: str | None = None,
        *,
        metadata_url: str = ECS_METADATA_URL,
        imdsv1_disabled: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = METADATA_TIMEOUT,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._role_name = role_name or None
        self._base = metadata_url.rstrip("/")
        self._imdsv1_disabled = imdsv1_disabled
        self._transport = transport
        self._timeout = timeout
        self._verify = verify

    def describe(self) -> str:
        role = self._role_name or "(discovered)"
        return f"ECS RAM role {role} (metadata service {self._base})"

    def __repr__(self) -> str:
        return f"EcsRamRoleProvider({self.describe()!r})"

    async def fetch(self) -> Credentials:
        async with httpx.AsyncClient(
            base_url=self._base,
            transport=self._transport,
            timeout=self._timeout,
            trust_env=False,  # the metadata service must never be reached through a proxy
            verify=self._verify,
        ) as http:
            headers = await self._session(http)
            role = self._role_name or await self._discover_role(http, headers)
            body = await self._read(
                http,
                _ROLES_PATH + quote(role, safe=""),
                headers,
                missing=f"RAM role {role!r} is not attached to this ECS instance",
            )
        where = f"metadata service {self._base}, RAM role {role!r}"
        try:
            data = json.loads(body)
        except ValueError:
            raise CredentialsError(f"{where}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise CredentialsError(f"{where}: the answer is not a JSON object")
        code = data.get("Code")
        if code != "Success":
            message = clean(str(data.get("Message") or ""))
            detail = f": {message}" if message else ""
            shown = safe_code(code) if code is not None else None
            raise CredentialsError(f"{where}: credentials not issued, Code {shown!r}{detail}")
        return temporary(data, where)

    async def _session(self, http: httpx.AsyncClient) -> dict[str, str]:
        """The IMDSv2 header, or {} for an IMDSv1 fallback."""
        where = f"metadata service {self._base}, PUT {_TOKEN_PATH}"
        try:
            request = http.build_request(
                "PUT", _TOKEN_PATH, headers={_TTL_HEADER: str(IMDS_TOKEN_TTL)}
            )
            response = await http.send(request, stream=True)
            try:
                body = await read_answer(response, where)
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from None
        except (httpx.HTTPError, CredentialsError) as exc:
            problem = type(exc).__name__
        else:
            token = _header_value(body)
            if response.status_code == 200 and token:
                return {_TOKEN_HEADER: token}
            problem = f"HTTP {response.status_code}" if not token else "an unusable token"
        if self._imdsv1_disabled:
            raise CredentialsError(
                f"metadata service {self._base}: no IMDSv2 session token ({problem}) and "
                "IMDSv1 is disabled (ALIBABA_CLOUD_IMDSV1_DISABLED)"
            )
        log.warning("credentials.imdsv1_fallback", metadata_url=self._base, reason=problem)
        return {}

    async def _discover_role(self, http: httpx.AsyncClient, headers: dict[str, str]) -> str:
        missing = "no RAM role is attached to this ECS instance"
        listing = await self._read(http, _ROLES_PATH, headers, missing=missing)
        roles = [line.strip() for line in listing.splitlines() if line.strip()]
        if not roles:
            raise CredentialsError(f"metadata service {self._base}: {missing}")
        if not _ROLE_NAME.match(roles[0]):
            raise CredentialsError(
                f"metadata service {self._base}: the attached role's name "
                f"{clean(roles[0], limit=70)!r} is not a RAM role name"
            )
        return roles[0]

    async def _read(
        self, http: httpx.AsyncClient, path: str, headers: dict[str, str], *, missing: str
    ) -> str:
        try:
            response = await http.send(
                http.build_request("GET", path, headers=headers), stream=True
            )
            try:
                body = await read_answer(response, f"metadata service {self._base}, GET {path}")
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise CredentialsError(
                f"metadata service {self._base}: no answer to GET {path} in time"
            ) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code == 404:
            raise CredentialsError(f"metadata service {self._base}: {missing} (HTTP 404)")
        if response.status_code != 200:
            enforced = not headers and response.status_code in (401, 403)
            hint = " (IMDSv1 refused: IMDSv2 is enforced but gave no token)" if enforced else ""
            raise CredentialsError(
                f"metadata service {self._base}: GET {path} answered HTTP "
                f"{response.status_code}{hint}"
            )
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise CredentialsError(
                f"metadata service {self._base}: GET {path} answered something that is not text"
            ) from None

    def _unreachable(self, exc: Exception) -> CredentialsError:
        return CredentialsError(
            f"metadata service {self._base} unreachable ({type(exc).__name__}): is this an "
            "ECS instance with a RAM role? (ALIBABA_CLOUD_ECS_METADATA)"
        )


def _header_value(body: bytes) -> str:
    """The IMDSv2 session token, if it can be sent back as a header ("" if not)."""
    try:
        return header_safe(body.decode("ascii"))
    except ValueError:  # UnicodeDecodeError included
        return ""
