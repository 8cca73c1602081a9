"""Where the DTS access key comes from: a chain of sources, the first configured one wins.

1. A static access key pair (optionally with an STS token): `ALIBABA_CLOUD_ACCESS_KEY_ID`,
   `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `ALIBABA_CLOUD_SECURITY_TOKEN`, or `[credentials]`.
2. RRSA (RAM Roles for Service Accounts, Kubernetes on ACK): when the role ARN, the OIDC
   provider ARN and the OIDC token file are all set, the token is exchanged for a role's
   temporary key with STS `AssumeRoleWithOIDC`.
3. A profile of the Alibaba Cloud CLI's `~/.aliyun/config.json`, when the file exists.
4. The ECS instance RAM role, from the metadata service, only when asked for (a role
   name or `ecs_metadata_enabled`): probing 100.100.100.200 off ECS would hang.

The chain is resolved once, when the watcher starts, from the configuration alone: the
source it picks is the one used (and logged); a failing source never silently falls
through to another identity.

Why a `Refreshing` wrapper rather than refresh logic in each source: the client calls
`get()` before every request, so `get()` must be a field read when the key is fresh, and
temporary keys must be renewed *before* DTS rejects them. The wrapper owns that policy
(renew when less than max(5 min, 20 % of the lifetime) remains, one renewal at a time,
keep a still-valid key when a renewal fails) and the sources only know how to fetch
(`CredentialsSource.fetch`), which keeps each of them testable against a fake endpoint.

Secrets are SecretStr; they never appear in a repr, a log line or an error message, and
neither does the OIDC token or the metadata service's session token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import anyio
import httpx
from pydantic import SecretStr

from watcher.logs import get_logger
from watcher.settings import CredentialsSettings, Settings, load_settings

log = get_logger("watcher.credentials")

ECS_METADATA_URL = "http://100.100.100.200"
IMDS_TOKEN_TTL = 21600  # seconds; the longest the ECS metadata service allows
STS_ENDPOINT = "https://sts.aliyuncs.com"
STS_API_VERSION = "2015-04-01"
DEFAULT_DURATION = 3600

_TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path, not a secret
_ROLES_PATH = "/latest/meta-data/ram/security-credentials/"
_TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"
_TOKEN_HEADER = "X-aliyun-ecs-metadata-token"  # noqa: S105 - a header name
# The metadata service answers in milliseconds on ECS; anywhere else nothing answers.
METADATA_TIMEOUT = httpx.Timeout(3.0, connect=1.0)
STS_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_MAX_MESSAGE = 300

NOTHING_FOUND = (
    "no DTS credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS), "
    "or [credentials] in the config file; or, for RRSA on Kubernetes, "
    "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and "
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE; or create ~/.aliyun/config.json (aliyun configure, "
    "or ALIBABA_CLOUD_CONFIG_FILE); or, on ECS, ALIBABA_CLOUD_ECS_METADATA=<RAM role name>"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CredentialsError(Exception):
    """No usable credentials; the message says why and what to set. Never holds a secret."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: SecretStr = field(repr=False)
    security_token: SecretStr | None = field(default=None, repr=False)
    expiration: datetime | None = None

    def __repr__(self) -> str:
        token = ", with STS token" if self.security_token else ""
        until = f", expires {self.expiration.isoformat()}" if self.expiration else ""
        return f"Credentials(access_key_id={self.access_key_id!r}{token}{until})"


class CredentialsProvider(Protocol):
    """What the DTS client uses: `get()` before every request (cheap when cached),
    `refresh()` once when DTS answers InvalidSecurityToken.Expired."""

    async def get(self) -> Credentials: ...

    async def refresh(self) -> Credentials: ...


class CredentialsSource(Protocol):
    """Something that can fetch credentials anew (an endpoint, a file); `Refreshing`
    decides when to call it."""

    def describe(self) -> str: ...

    async def fetch(self) -> Credentials: ...


def describe(provider: object) -> str:
    """Which source a provider reads, for logs (never a secret)."""
    method = getattr(provider, "describe", None)
    return str(method()) if callable(method) else type(provider).__name__


# -- 1. static keys ----------------------------------------------------------------------


def from_settings(section: CredentialsSettings) -> Credentials:
    if not section.access_key_id or section.access_key_secret is None:
        raise CredentialsError(NOTHING_FOUND)
    return Credentials(
        access_key_id=section.access_key_id,
        access_key_secret=section.access_key_secret,
        security_token=section.security_token,
    )


class StaticProvider:
    """Credentials from configuration; `refresh` re-reads the configuration once."""

    def __init__(
        self,
        credentials: Credentials,
        reload: Callable[[], Credentials] | None = None,
    ) -> None:
        self._credentials = credentials
        self._reload = reload

    @classmethod
    def from_config(cls, section: CredentialsSettings, config_file: str | None) -> StaticProvider:
        def reload() -> Credentials:
            return from_settings(load_settings(config_file).credentials)

        return cls(from_settings(section), reload)

    def describe(self) -> str:
        kind = "STS token" if self._credentials.security_token else "access key"
        return f"static {kind} {self._credentials.access_key_id} (environment or config)"

    def __repr__(self) -> str:
        return f"StaticProvider({self._credentials!r})"

    async def get(self) -> Credentials:
        return self._credentials

    async def refresh(self) -> Credentials:
        if self._reload is not None:
            self._credentials = self._reload()
        return self._credentials


# -- shared parsing ----------------------------------------------------------------------


def _clean(message: str, *secrets: str) -> str:
    """An upstream message fit for an error: one line, short, no secret echoed back."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = " ".join(message.split())
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _parse_expiration(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str) or not raw.strip():
        raise CredentialsError(f"{where}: the answer has no Expiration")
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CredentialsError(
            f"{where}: Expiration {_clean(raw)!r} is not an ISO 8601 time"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _temporary(data: Mapping[str, Any], where: str) -> Credentials:
    """AccessKeyId / AccessKeySecret / SecurityToken / Expiration, as STS and ECS send them."""
    names = ("AccessKeyId", "AccessKeySecret", "SecurityToken")
    missing = [name for name in names if not isinstance(data.get(name), str) or not data[name]]
    if missing:
        raise CredentialsError(f"{where}: the answer lacks {', '.join(missing)}")
    return Credentials(
        access_key_id=data["AccessKeyId"],
        access_key_secret=SecretStr(data["AccessKeySecret"]),
        security_token=SecretStr(data["SecurityToken"]),
        expiration=_parse_expiration(data.get("Expiration"), where),
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _read_text(path: Path, what: str) -> str:
    try:
        return await anyio.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CredentialsError(f"{what} {path} cannot be read: {reason}") from None


# -- 4. the ECS instance RAM role --------------------------------------------------------


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
    ) -> None:
        self._role_name = role_name or None
        self._base = metadata_url.rstrip("/")
        self._imdsv1_disabled = imdsv1_disabled
        self._transport = transport
        self._timeout = timeout

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
            message = _clean(str(data.get("Message") or ""))
            detail = f": {message}" if message else ""
            raise CredentialsError(f"{where}: credentials not issued, Code {code!r}{detail}")
        return _temporary(data, where)

    async def _session(self, http: httpx.AsyncClient) -> dict[str, str]:
        """The IMDSv2 header, or {} for an IMDSv1 fallback."""
        try:
            response = await http.put(_TOKEN_PATH, headers={_TTL_HEADER: str(IMDS_TOKEN_TTL)})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from None
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        else:
            token = response.text.strip()
            if response.status_code == 200 and token:
                return {_TOKEN_HEADER: token}
            problem = f"HTTP {response.status_code}"
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
        return roles[0]

    async def _read(
        self, http: httpx.AsyncClient, path: str, headers: dict[str, str], *, missing: str
    ) -> str:
        try:
            response = await http.get(path, headers=headers)
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
        return response.text

    def _unreachable(self, exc: Exception) -> CredentialsError:
        return CredentialsError(
            f"metadata service {self._base} unreachable ({type(exc).__name__}): is this an "
            "ECS instance with a RAM role? (ALIBABA_CLOUD_ECS_METADATA)"
        )


# -- 2. RRSA: AssumeRoleWithOIDC ---------------------------------------------------------


def sts_endpoint(endpoint: str | None = None, region: str | None = None) -> str:
    """The STS URL: an explicit endpoint, else the regional one, else the central one."""
    if endpoint:
        return endpoint.rstrip("/")
    if region:
        return f"https://sts.{region}.aliyuncs.com"
    return STS_ENDPOINT


class OidcRoleProvider:
    """A RAM role's temporary key for an OIDC token (RRSA on Kubernetes).

    The token file is read on every fetch: the kubelet rotates the projected token, and an
    old one would be refused. AssumeRoleWithOIDC is anonymous (the token is the proof),
    so the request carries no signature.
    """

    def __init__(
        self,
        role_arn: str,
        oidc_provider_arn: str,
        token_file: Path,
        *,
        session_name: str | None = None,
        duration: int = DEFAULT_DURATION,
        endpoint: str = STS_ENDPOINT,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = STS_TIMEOUT,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._role_arn = role_arn
        self._provider_arn = oidc_provider_arn
        self._token_file = Path(token_file)
        self._session_name = session_name
        self._duration = duration
        self._endpoint = endpoint.rstrip("/")
        self._transport = transport
        self._timeout = timeout
        self._now = now

    def describe(self) -> str:
        return f"RRSA role {self._role_arn} (OIDC token {self._token_file}, STS {self._endpoint})"

    def __repr__(self) -> str:
        return f"OidcRoleProvider({self.describe()!r})"

    async def fetch(self) -> Credentials:
        token = (await _read_text(self._token_file, "the OIDC token file")).strip()
        if not token:
            raise CredentialsError(f"the OIDC token file {self._token_file} is empty")
        now = self._now().astimezone(UTC)
        query = {
            "Action": "AssumeRoleWithOIDC",
            "Format": "JSON",
            "Version": STS_API_VERSION,
            "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        form = {
            "RoleArn": self._role_arn,
            "OIDCProviderArn": self._provider_arn,
            "OIDCToken": token,
            "RoleSessionName": self._session_name or f"dts-watcher-{int(now.timestamp())}",
            "DurationSeconds": str(self._duration),
        }
        where = f"STS AssumeRoleWithOIDC for {self._role_arn} at {self._endpoint}"
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=self._timeout, trust_env=False
            ) as http:
                response = await http.post(self._endpoint + "/", params=query, data=form)
        except httpx.TimeoutException:
            raise CredentialsError(f"{where}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise CredentialsError(f"{where}: unreachable ({type(exc).__name__})") from None
        data = _json_object(response)
        issued = data.get("Credentials") if data else None
        if response.status_code != 200 or not isinstance(issued, dict):
            raise self._failure(where, response, data, token)
        return _temporary(issued, where)

    @staticmethod
    def _failure(
        where: str, response: httpx.Response, data: dict[str, Any] | None, token: str
    ) -> CredentialsError:
        data = data or {}
        if data.get("Code"):
            message = _clean(str(data.get("Message") or ""), token)
            detail = f"{_clean(str(data['Code']), token)}: {message}"
        else:
            detail = "the answer is not the expected JSON"
        context = f"HTTP {response.status_code}"
        request_id = data.get("RequestId") or response.headers.get("x-acs-request-id")
        if request_id:
            context += f", RequestId {_clean(str(request_id))}"
        return CredentialsError(f"{where} failed: {detail} ({context})")


# -- 3. the Alibaba Cloud CLI's profile file ---------------------------------------------

SUPPORTED_MODES = ("AK", "StsToken", "EcsRamRole", "OIDC")


def default_profile_file() -> Path | None:
    try:
        return Path.home() / ".aliyun" / "config.json"
    except RuntimeError:  # no home directory to speak of
        return None


class ProfileProvider:
    """One profile of `~/.aliyun/config.json`, the file `aliyun configure` writes.

    The file is read again on every fetch, so `refresh()` picks up `aliyun configure`
    changes. Modes: AK, StsToken, EcsRamRole (the ECS source, with the profile's role
    name) and OIDC (the RRSA source, with the profile's ARNs and token file). Others
    (RamRoleArn, ChainableRamRoleArn, External, CredentialsURI, CloudSSO, ...) are refused
    when the watcher starts, with a message naming the mode.
    """

    def __init__(
        self,
        path: Path,
        profile: str | None = None,
        *,
        metadata_url: str = ECS_METADATA_URL,
        imdsv1_disabled: bool = False,
        sts_endpoint: str = STS_ENDPOINT,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._path = Path(path)
        self._wanted = profile
        self._metadata_url = metadata_url
        self._imdsv1_disabled = imdsv1_disabled
        self._sts_endpoint = sts_endpoint
        self._transport = transport
        self._now = now
        try:
            text = self._path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise CredentialsError(
                f"the profile file {self._path} cannot be read: {reason}"
            ) from None
        chosen = self._select(text)  # fail when the watcher starts, not at the first request
        self.name = str(chosen["name"])
        self.mode = _mode(chosen)

    def describe(self) -> str:
        return f"profile {self.name!r} ({self.mode}) in {self._path}"

    def __repr__(self) -> str:
        return f"ProfileProvider({self.describe()!r})"

    async def fetch(self) -> Credentials:
        profile = self._select(await _read_text(self._path, "the profile file"))
        mode = _mode(profile)
        where = f"profile {profile['name']!r} ({mode}) in {self._path}"
        if mode in ("AK", "StsToken"):
            needed = ["access_key_id", "access_key_secret"]
            if mode == "StsToken":
                needed.append("sts_token")
            missing = [name for name in needed if not _text(profile, name)]
            if missing:
                raise CredentialsError(f"{where} has no {', '.join(missing)}")
            token = _text(profile, "sts_token") if mode == "StsToken" else ""
            return Credentials(
                access_key_id=_text(profile, "access_key_id"),
                access_key_secret=SecretStr(_text(profile, "access_key_secret")),
                security_token=SecretStr(token) if token else None,
            )
        if mode == "EcsRamRole":
            return await EcsRamRoleProvider(
                _text(profile, "ram_role_name") or None,
                metadata_url=self._metadata_url,
                imdsv1_disabled=self._imdsv1_disabled,
                transport=self._transport,
            ).fetch()
        # OIDC (the only other mode _select lets through)
        missing = [
            name
            for name in ("ram_role_arn", "oidc_provider_arn", "oidc_token_file")
            if not _text(profile, name)
        ]
        if missing:
            raise CredentialsError(f"{where} has no {', '.join(missing)}")
        region = _text(profile, "sts_region")
        seconds = profile.get("expired_seconds")
        duration = seconds if isinstance(seconds, int) and seconds >= 900 else DEFAULT_DURATION
        return await OidcRoleProvider(
            _text(profile, "ram_role_arn"),
            _text(profile, "oidc_provider_arn"),
            _user_path(_text(profile, "oidc_token_file")),
            session_name=_text(profile, "ram_session_name") or None,
            duration=duration,
            endpoint=sts_endpoint(None, region) if region else self._sts_endpoint,
            transport=self._transport,
            now=self._now,
        ).fetch()

    def _select(self, text: str) -> dict[str, Any]:
        try:
            document = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", "?")
            raise CredentialsError(
                f"the profile file {self._path} is not valid JSON (line {line})"
            ) from None
        if not isinstance(document, dict) or not isinstance(document.get("profiles"), list):
            raise CredentialsError(
                f'the profile file {self._path} has no "profiles" list '
                "(is it the aliyun CLI's config.json?)"
            )
        current = document.get("current")
        name = self._wanted or (current if isinstance(current, str) and current else "default")
        profiles = [p for p in document["profiles"] if isinstance(p, dict)]
        chosen = next((p for p in profiles if p.get("name") == name), None)
        if chosen is None:
            known = ", ".join(sorted(str(p.get("name")) for p in profiles)) or "none"
            origin = " (ALIBABA_CLOUD_PROFILE)" if self._wanted else ""
            raise CredentialsError(
                f"profile {name!r}{origin} is not in {self._path} (profiles there: {known})"
            )
        mode = _mode(chosen)
        if mode not in SUPPORTED_MODES:
            raise CredentialsError(
                f"profile {name!r} in {self._path} uses mode {mode!r}, which dts-watcher does "
                f"not support (supported: {', '.join(SUPPORTED_MODES)}); use another profile "
                "(ALIBABA_CLOUD_PROFILE) or another credentials source"
            )
        return chosen


def _mode(profile: Mapping[str, Any]) -> str:
    mode = profile.get("mode")
    return mode if isinstance(mode, str) and mode else "AK"  # the CLI's default


def _user_path(text: str) -> Path:
    return Path(text).expanduser()


def _text(profile: Mapping[str, Any], name: str) -> str:
    value = profile.get(name)
    return value.strip() if isinstance(value, str) else ""


# -- renewal -----------------------------------------------------------------------------


class Refreshing:
    """Caches a source's credentials and renews them before they expire.

    `get()` is a clock read while the key is fresh. Once less than max(`min_margin`,
    `fraction` of its lifetime) remains (never more than half the lifetime), the next
    `get()` renews it, one renewal at a time: concurrent callers wait for that one. If a
    renewal fails while the key is still valid, the key is kept, a warning is logged and
    the renewal is retried `retry_after` later; once it has expired, `get()` raises
    CredentialsError. Keys without an expiration (static ones) are renewed only by
    `refresh()`, which always fetches (DTS said the token expired), unless a concurrent
    caller just did.
    """

    def __init__(
        self,
        source: CredentialsSource,
        *,
        now: Callable[[], datetime] = _utcnow,
        min_margin: timedelta = timedelta(minutes=5),
        fraction: float = 0.2,
        retry_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self._source = source
        self._now = now
        self._min_margin = min_margin
        self._fraction = fraction
        self._retry_after = retry_after
        self._cached: Credentials | None = None
        self._renew_at: datetime | None = None  # None: only on refresh()
        self._generation = 0
        self._lock = anyio.Lock()

    @property
    def source(self) -> CredentialsSource:
        return self._source

    @property
    def renew_at(self) -> datetime | None:
        """When the next `get()` will renew the cached key (None: not before `refresh()`)."""
        return self._renew_at

    def describe(self) -> str:
        return self._source.describe()

    def __repr__(self) -> str:
        return f"Refreshing({self._source!r}, cached={self._cached!r})"

    async def get(self) -> Credentials:
        cached = self._cached
        if cached is not None and not self._due():
            return cached
        async with self._lock:
            cached = self._cached
            if cached is not None and not self._due():
                return cached  # renewed by the caller we waited for
            return await self._renew()

    async def refresh(self) -> Credentials:
        seen = self._generation
        async with self._lock:
            if self._generation != seen and self._cached is not None:
                return self._cached  # renewed while we waited: that is the fresh key
            return await self._renew()

    def _due(self) -> bool:
        return self._renew_at is not None and self._now() >= self._renew_at

    async def _renew(self) -> Credentials:
        try:
            fresh = await self._source.fetch()
            now = self._now()
            if fresh.expiration is not None and fresh.expiration <= now:
                raise CredentialsError(
                    f"{self.describe()}: issued credentials that expired at "
                    f"{fresh.expiration.isoformat()} (is this machine's clock right?)"
                )
        except Exception as exc:
            return self._keep_or_raise(exc)
        self._cached = fresh
        self._generation += 1
        if fresh.expiration is None:
            self._renew_at = None
        else:
            lifetime = fresh.expiration - now
            margin = min(max(self._min_margin, lifetime * self._fraction), lifetime / 2)
            self._renew_at = fresh.expiration - margin
        log.info(
            "credentials.renewed",
            source=self.describe(),
            expires_at=fresh.expiration.isoformat() if fresh.expiration else None,
            renew_at=self._renew_at.isoformat() if self._renew_at else None,
        )
        return fresh

    def _keep_or_raise(self, exc: Exception) -> Credentials:
        error = (
            exc
            if isinstance(exc, CredentialsError)
            else CredentialsError(f"{self.describe()}: {type(exc).__name__}")
        )
        now = self._now()
        cached = self._cached
        if cached is None or (cached.expiration is not None and cached.expiration <= now):
            if cached is not None:
                log.error(
                    "credentials.expired",
                    source=self.describe(),
                    expired_at=cached.expiration.isoformat() if cached.expiration else None,
                    error=str(error),
                )
            if error is exc:
                raise error
            raise error from exc
        retry = now + self._retry_after
        if cached.expiration is not None:
            retry = min(retry, cached.expiration)
        self._renew_at = retry
        log.warning(
            "credentials.renewal_failed",
            source=self.describe(),
            error=str(error),
            keeping_until=cached.expiration.isoformat() if cached.expiration else None,
            retry_at=retry.isoformat(),
        )
        return cached


# -- the chain ---------------------------------------------------------------------------


def provider_from_settings(
    settings: Settings,
    config_file: str | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = _utcnow,
) -> CredentialsProvider:
    """The first configured source of the chain (see the module docstring), logged by name.

    Raises CredentialsError when none is configured, or when the chosen one is unusable
    from the start (a profile file that names an unsupported mode, for instance).
    """
    provider = _choose(settings.credentials, config_file, transport, now)
    log.info("credentials.source", source=describe(provider))
    return provider


def _choose(
    section: CredentialsSettings,
    config_file: str | None,
    transport: httpx.AsyncBaseTransport | None,
    now: Callable[[], datetime],
) -> CredentialsProvider:
    if section.access_key_id:
        return StaticProvider.from_config(section, config_file)

    sts = sts_endpoint(section.sts_endpoint, section.sts_region)
    rrsa = {
        "ALIBABA_CLOUD_ROLE_ARN": section.role_arn,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": section.oidc_provider_arn,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": section.oidc_token_file,
    }
    if section.role_arn and section.oidc_provider_arn and section.oidc_token_file:
        return Refreshing(
            OidcRoleProvider(
                section.role_arn,
                section.oidc_provider_arn,
                section.oidc_token_file,
                session_name=section.role_session_name,
                duration=section.role_session_duration,
                endpoint=sts,
                transport=transport,
                now=now,
            ),
            now=now,
        )
    hint = ""
    missing = [name for name, value in rrsa.items() if not value]
    if len(missing) < len(rrsa):
        hint = f" (RRSA is only partly configured: {', '.join(missing)} not set)"
        log.warning("credentials.rrsa_incomplete", missing=missing)

    path = section.profile_file or default_profile_file()
    if path is not None and path.expanduser().is_file():
        return Refreshing(
            ProfileProvider(
                path.expanduser(),
                section.profile,
                metadata_url=section.ecs_metadata_url,
                imdsv1_disabled=section.imdsv1_disabled,
                sts_endpoint=sts,
                transport=transport,
                now=now,
            ),
            now=now,
        )
    if section.profile_file is not None:
        raise CredentialsError(
            f"the profile file {section.profile_file} (ALIBABA_CLOUD_CONFIG_FILE) does not exist"
        )
    if section.profile is not None:
        raise CredentialsError(
            f"profile {section.profile!r} (ALIBABA_CLOUD_PROFILE) is set but {path} does not exist"
        )

    if section.ecs_ram_role or section.ecs_metadata_enabled:
        return Refreshing(
            EcsRamRoleProvider(
                section.ecs_ram_role,
                metadata_url=section.ecs_metadata_url,
                imdsv1_disabled=section.imdsv1_disabled,
                transport=transport,
            ),
            now=now,
        )
    raise CredentialsError(NOTHING_FOUND + hint)


__all__ = [
    "ECS_METADATA_URL",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "CredentialsSource",
    "EcsRamRoleProvider",
    "OidcRoleProvider",
    "ProfileProvider",
    "Refreshing",
    "StaticProvider",
    "default_profile_file",
    "describe",
    "from_settings",
    "provider_from_settings",
    "sts_endpoint",
]
