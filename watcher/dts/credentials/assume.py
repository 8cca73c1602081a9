"""A RAM role of another account, assumed with STS `AssumeRole` from the base credentials.

The usual way one principal watches many Alibaba Cloud accounts: each account has a role
whose trust policy names the watcher's principal, and whose policy allows
`dts:DescribeDtsJobs` (or `dts:DescribeSynchronizationJobs`). The base principal needs
`sts:AssumeRole` on those roles. The call is signed (ACS3-HMAC-SHA256, the DTS client's
own signing) with the base credentials, which come from the usual chain
(`provider_from_settings`). `Refreshing` renews the temporary key before it expires.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from watcher.dts import signing
from watcher.dts.credentials.answers import clean, json_object, read_answer, temporary
from watcher.dts.credentials.base import (
    Credentials,
    CredentialsError,
    CredentialsProvider,
    utcnow,
)
from watcher.dts.credentials.oidc import DEFAULT_DURATION, STS_API_VERSION, STS_TIMEOUT
from watcher.dts.upstream import safe_code

ACTION = "AssumeRole"


class AssumeRoleSource:
    """The temporary key of `role_arn`, for `Refreshing` to cache and renew."""

    def __init__(
        self,
        base: CredentialsProvider,
        role_arn: str,
        *,
        account: str,
        endpoint: str,
        session_name: str | None = None,
        duration: int = DEFAULT_DURATION,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = STS_TIMEOUT,
        now: Callable[[], datetime] = utcnow,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._verify = verify
        self._base = base
        self._role_arn = role_arn
        self._account = account
        self._endpoint = endpoint.rstrip("/")
        self._session_name = session_name
        self._duration = duration
        self._transport = transport
        self._timeout = timeout
        self._now = now

    def describe(self) -> str:
        return (
            f"role {self._role_arn} of account {self._account} (STS AssumeRole, {self._endpoint})"
        )

    def __repr__(self) -> str:
        return f"AssumeRoleSource({self.describe()!r})"

    async def fetch(self) -> Credentials:
        where = f"STS AssumeRole of {self._role_arn} (account {self._account})"
        try:
            base = await self._base.get()
        except CredentialsError as exc:  # its message is safe by contract
            raise CredentialsError(f"{where}: the base credentials are unusable: {exc}") from None
        except Exception as exc:  # its type, never its text
            raise CredentialsError(
                f"{where}: the base credentials are unusable ({type(exc).__name__})"
            ) from None
        now = self._now().astimezone(UTC)
        scheme, _, host = self._endpoint.partition("://")
        params = {
            "RoleArn": self._role_arn,
            "RoleSessionName": self._session_name or f"dts-watcher-{int(now.timestamp())}",
            "DurationSeconds": str(self._duration),
        }
        secret = base.access_key_secret.get_secret_value()
        request = signing.sign_request(
            method="POST",
            host=host,
            scheme=scheme,
            action=ACTION,
            params=params,
            access_key_id=base.access_key_id,
            access_key_secret=secret,
            security_token=(
                base.security_token.get_secret_value() if base.security_token else None
            ),
            now=now,
            nonce=uuid.uuid4().hex,
            version=STS_API_VERSION,
        )
        try:
            async with httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                trust_env=False,
                verify=self._verify,
            ) as http:
                sent = http.build_request(request.method, request.url, headers=request.headers)
                response = await http.send(sent, stream=True)
                try:
                    content = await read_answer(response, where)
                finally:
                    await response.aclose()
        except httpx.TimeoutException:
            raise CredentialsError(f"{where}: no answer from {self._endpoint} in time") from None
        except httpx.HTTPError as exc:
            raise CredentialsError(
                f"{where}: {self._endpoint} unreachable ({type(exc).__name__})"
            ) from None
        data = json_object(content)
        issued = data.get("Credentials") if data else None
        if response.status_code != 200 or not isinstance(issued, dict):
            raise _refused(where, response, data or {}, secret)
        return temporary(issued, where)


def _refused(
    where: str, response: httpx.Response, data: dict[str, object], secret: str
) -> CredentialsError:
    """STS's refusal in plain words: the code says whether the role exists, may be
    assumed, or the base key itself was refused."""
    code = safe_code(data.get("Code") or f"HTTP{response.status_code}", secret)
    message = clean(str(data.get("Message") or "the answer is not the expected JSON"), secret)
    lowered = code.lower()
    if lowered.startswith("entitynotexist.role"):
        why = "the role does not exist"
    elif lowered.startswith(("nopermission", "forbidden", "notauthorized")):
        why = (
            "the base credentials may not assume this role (its trust policy must name "
            "them, and they need sts:AssumeRole)"
        )
    elif lowered.startswith(("invalidaccesskeyid", "signaturedoesnotmatch")):
        why = "STS refused the base credentials"
    else:
        why = "the role cannot be assumed"
    request_id = data.get("RequestId") or response.headers.get("x-acs-request-id")
    context = f"HTTP {response.status_code}" + (
        f", RequestId {safe_code(request_id, secret)}" if request_id else ""
    )
    return CredentialsError(f"{where} failed: {why} ({code}: {message}; {context})")
