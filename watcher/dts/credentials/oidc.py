"""2. RRSA (RAM Roles for Service Accounts, Kubernetes on ACK): an OIDC token exchanged
for a role's temporary key with STS `AssumeRoleWithOIDC`."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from watcher.dts.credentials.answers import (
    clean,
    json_object,
    read_answer,
    read_text,
    temporary,
)
from watcher.dts.credentials.base import Credentials, CredentialsError, utcnow
from watcher.dts.upstream import safe_code

STS_ENDPOINT = "https://sts.aliyuncs.com"
STS_API_VERSION = "2015-04-01"
STS_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
DEFAULT_DURATION = 3600


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
        now: Callable[[], datetime] = utcnow,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._verify = verify
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
        token = (await read_text(self._token_file, "the OIDC token file")).strip()
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
                transport=self._transport,
                timeout=self._timeout,
                trust_env=False,
                verify=self._verify,
            ) as http:
                request = http.build_request("POST", self._endpoint + "/", params=query, data=form)
                response = await http.send(request, stream=True)
                try:
                    content = await read_answer(response, where)
                finally:
                    await response.aclose()
        except httpx.TimeoutException:
            raise CredentialsError(f"{where}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise CredentialsError(f"{where}: unreachable ({type(exc).__name__})") from None
        data = json_object(content)
        issued = data.get("Credentials") if data else None
        if response.status_code != 200 or not isinstance(issued, dict):
            raise self._failure(where, response, data, token)
        return temporary(issued, where)

    @staticmethod
    def _failure(
        where: str, response: httpx.Response, data: dict[str, Any] | None, token: str
    ) -> CredentialsError:
        """STS's Code, Message and RequestId, bounded, the OIDC token masked in each."""
        data = data or {}
        if data.get("Code"):
            message = clean(str(data.get("Message") or ""), token)
            detail = f"{safe_code(data['Code'], token)}: {message}"
        else:
            detail = "the answer is not the expected JSON"
        context = f"HTTP {response.status_code}"
        request_id = data.get("RequestId") or response.headers.get("x-acs-request-id")
        if request_id:
            shown = str(request_id)
            echoed = len(shown) >= 8 and shown in token  # a piece of the token, echoed back
            context += f", RequestId {'***' if echoed else safe_code(shown, token)}"
        return CredentialsError(f"{where} failed: {detail} ({context})")
