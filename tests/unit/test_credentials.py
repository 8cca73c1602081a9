"""Credential sources, the renewal policy and the chain, below the I/O boundary.

The metadata service and STS are faked with httpx.MockTransport here, and time is an
injected clock, so every branch is exact and instant. The same sources against real HTTP
servers on 127.0.0.1 (and the DTS client end to end) are in
tests/integration/test_credentials_endpoints.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest
from pydantic import SecretStr

from tests.support.clock import Clock
from watcher.dts.credentials import (
    METADATA_TIMEOUT,
    NOTHING_FOUND,
    STS_ENDPOINT,
    Credentials,
    CredentialsError,
    EcsRamRoleProvider,
    OidcRoleProvider,
    ProfileProvider,
    Refreshing,
    StaticProvider,
    describe,
    provider_from_settings,
    sts_endpoint,
)
from watcher.logs import configure
from watcher.settings import ConfigError, Settings, load_settings

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
SECRET = "sEcReT-access-key-secret"
STS_TOKEN = "sts-security-token-value"
OIDC_TOKEN = "eyJhbGciOi.oidc-jwt-payload.signature"
IMDS_TOKEN = "imds-session-token-abc"
ROLE = "dts-watcher-role"
ROLE_ARN = "acs:ram::1234567890:role/dts-watcher"
PROVIDER_ARN = "acs:ram::1234567890:oidc-provider/ack-rrsa-c123"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer setting leaks in, and ~ is an empty folder (no ~/.aliyun)."""
    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure("debug", "json", stream=stream)
    yield stream
    logging.getLogger().handlers.clear()


class ScriptedSource:
    """A CredentialsSource whose n-th fetch returns key n, valid `lifetime` from now."""

    def __init__(self, clock: Clock, lifetime: timedelta | None = timedelta(hours=1)) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.fetches = 0
        self.fail: Exception | None = None
        self.gate: anyio.Event | None = None
        self.started = anyio.Event()

    def describe(self) -> str:
        return "scripted source"

    async def fetch(self) -> Credentials:
        self.fetches += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        n = self.fetches
        expiration = self.clock() + self.lifetime if self.lifetime is not None else None
        return Credentials(
            f"STS.key{n}", SecretStr(f"{SECRET}-{n}"), SecretStr(f"{STS_TOKEN}-{n}"), expiration
        )


# -- Refreshing: when to renew -----------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "renew_after"),
    [
        (timedelta(hours=1), timedelta(minutes=48)),  # 20 % (12 min) is more than 5 min
        (timedelta(hours=6), timedelta(hours=4, minutes=48)),  # ECS keys: 72 min ahead
        (timedelta(minutes=20), timedelta(minutes=15)),  # 20 % is 4 min: 5 min wins
        (timedelta(minutes=6), timedelta(minutes=3)),  # never more than half the lifetime
    ],
)
async def test_get_renews_before_expiry(lifetime: timedelta, renew_after: timedelta) -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock, lifetime)
    provider = Refreshing(source, now=clock)

    first = await provider.get()
    clock.at = T0 + renew_after - timedelta(seconds=1)
    assert await provider.get() is first
    assert source.fetches == 1
    clock.at = T0 + renew_after
    renewed = await provider.get()
    assert renewed.access_key_id == "STS.key2" and source.fetches == 2
    assert renewed.expiration == T0 + renew_after + lifetime


async def test_get_is_a_cache_read_while_fresh() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    provider = Refreshing(source, now=clock)
    keys = {(await provider.get()).access_key_id for _ in range(100)}
    assert keys == {"STS.key1"} and source.fetches == 1


async def test_keys_without_expiration_are_renewed_only_by_refresh() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock, lifetime=None)
    provider = Refreshing(source, now=clock)
    await provider.get()
    clock.advance(days=30)
    assert (await provider.get()).access_key_id == "STS.key1"
    assert (await provider.refresh()).access_key_id == "STS.key2"
    assert source.fetches == 2


async def test_refresh_fetches_even_when_the_key_looks_fresh() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    provider = Refreshing(source, now=clock)
    await provider.get()
    assert (await provider.refresh()).access_key_id == "STS.key2"
    assert (await provider.get()).access_key_id == "STS.key2"


async def test_concurrent_gets_share_one_renewal() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    provider = Refreshing(source, now=clock)
    await provider.get()
    clock.advance(minutes=50)  # past the renewal point, still valid
    source.gate, source.started = anyio.Event(), anyio.Event()
    results: list[str] = []

    async def one() -> None:
        results.append((await provider.get()).access_key_id)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
        await source.started.wait()
        await anyio.wait_all_tasks_blocked()  # every caller is now waiting on the renewal
        source.gate.set()
    assert source.fetches == 2
    assert results == ["STS.key2"] * 20


async def test_concurrent_first_gets_fetch_once() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    source.gate = anyio.Event()
    provider = Refreshing(source, now=clock)
    results: list[str] = []

    async def one() -> None:
        results.append((await provider.get()).access_key_id)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)
        await source.started.wait()
        await anyio.wait_all_tasks_blocked()
        source.gate.set()
    assert source.fetches == 1 and results == ["STS.key1"] * 10


async def test_concurrent_refreshes_share_one_fetch() -> None:
    """Several pages told InvalidSecurityToken.Expired at once renew the key once."""
    clock = Clock(T0)
    source = ScriptedSource(clock)
    provider = Refreshing(source, now=clock)
    await provider.get()
    source.gate, source.started = anyio.Event(), anyio.Event()
    results: list[str] = []

    async def one() -> None:
        results.append((await provider.refresh()).access_key_id)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
        await source.started.wait()
        await anyio.wait_all_tasks_blocked()
        source.gate.set()
    assert source.fetches == 2 and results == ["STS.key2"] * 5


async def test_a_failed_renewal_keeps_a_valid_key_warns_and_retries_later(
    logs: io.StringIO,
) -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    provider = Refreshing(source, now=clock, retry_after=timedelta(seconds=30))
    first = await provider.get()
    clock.advance(minutes=50)
    source.fail = CredentialsError("metadata service unreachable")

    assert await provider.get() is first
    assert source.fetches == 2
    warning = next(
        json.loads(line) for line in logs.getvalue().splitlines() if "renewal_failed" in line
    )
    assert warning["level"] == "warning"
    assert warning["source"] == "scripted source"
    assert "metadata service unreachable" in warning["error"]
    assert warning["keeping_until"] == (T0 + timedelta(hours=1)).isoformat()

    clock.advance(seconds=10)  # no new attempt before retry_after
    assert await provider.get() is first and source.fetches == 2
    clock.advance(seconds=20)
    assert await provider.get() is first and source.fetches == 3
    source.fail = None
    clock.advance(seconds=30)
    assert (await provider.get()).access_key_id == "STS.key4"


async def test_a_failed_renewal_after_expiry_raises() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    provider = Refreshing(source, now=clock)
    await provider.get()
    clock.advance(minutes=61)
    source.fail = CredentialsError("metadata service unreachable")
    with pytest.raises(CredentialsError, match="metadata service unreachable"):
        await provider.get()


async def test_a_failed_first_fetch_raises() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    source.fail = CredentialsError("STS said no")
    with pytest.raises(CredentialsError, match="STS said no"):
        await Refreshing(source, now=clock).get()


async def test_an_unexpected_error_becomes_a_credentials_error_without_its_text() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock)
    source.fail = RuntimeError(f"something with {SECRET} inside")
    with pytest.raises(CredentialsError) as caught:
        await Refreshing(source, now=clock).get()
    assert "RuntimeError" in str(caught.value) and SECRET not in str(caught.value)


async def test_credentials_already_expired_when_issued_are_refused() -> None:
    clock = Clock(T0)
    source = ScriptedSource(clock, lifetime=timedelta(seconds=-5))
    with pytest.raises(CredentialsError, match="clock"):
        await Refreshing(source, now=clock).get()


# -- the ECS metadata service ------------------------------------------------------------


class FakeMetadata:
    """The ECS metadata service as a MockTransport handler."""

    def __init__(self, *, v2: bool = True, role: str | None = ROLE) -> None:
        self.v2 = v2
        self.role = role
        self.code = "Success"
        self.requests: list[httpx.Request] = []
        self.unreachable = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path == "/latest/api/token":
            if request.method != "PUT" or not self.v2:
                return httpx.Response(404 if not self.v2 else 405)
            return httpx.Response(200, text=IMDS_TOKEN)
        sent = request.headers.get("x-aliyun-ecs-metadata-token")
        if sent is not None and sent != IMDS_TOKEN:
            return httpx.Response(401)
        prefix = "/latest/meta-data/ram/security-credentials/"
        if path == prefix:
            return httpx.Response(200, text=self.role) if self.role else httpx.Response(404)
        if path == prefix + (self.role or "-"):
            return httpx.Response(
                200,
                json={
                    "AccessKeyId": "STS.ecs-key",
                    "AccessKeySecret": SECRET,
                    "SecurityToken": STS_TOKEN,
                    "Expiration": "2026-11-28T18:00:00Z",
                    "LastUpdated": "2026-11-28T12:00:00Z",
                    "Code": self.code,
                },
            )
        return httpx.Response(404)

    def paths(self) -> list[tuple[str, str, str | None]]:
        return [
            (r.method, r.url.path, r.headers.get("x-aliyun-ecs-metadata-token"))
            for r in self.requests
        ]


def ecs(fake: FakeMetadata, role: str | None = None, **options: Any) -> EcsRamRoleProvider:
    return EcsRamRoleProvider(
        role,
        metadata_url="http://metadata.test",
        transport=httpx.MockTransport(fake.handler),
        **options,
    )


async def test_ecs_imdsv2_token_then_role_discovery_then_credentials() -> None:
    fake = FakeMetadata()
    creds = await ecs(fake).fetch()
    assert fake.paths() == [
        ("PUT", "/latest/api/token", None),
        ("GET", "/latest/meta-data/ram/security-credentials/", IMDS_TOKEN),
        ("GET", f"/latest/meta-data/ram/security-credentials/{ROLE}", IMDS_TOKEN),
    ]
    assert fake.requests[0].headers["x-aliyun-ecs-metadata-token-ttl-seconds"] == "21600"
    assert creds.access_key_id == "STS.ecs-key"
    assert creds.access_key_secret.get_secret_value() == SECRET
    assert creds.security_token is not None
    assert creds.security_token.get_secret_value() == STS_TOKEN
    assert creds.expiration == datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


async def test_ecs_configured_role_is_not_discovered() -> None:
    fake = FakeMetadata()
    await ecs(fake, ROLE).fetch()
    assert [p for _, p, _ in fake.paths()] == [
        "/latest/api/token",
        f"/latest/meta-data/ram/security-credentials/{ROLE}",
    ]


async def test_ecs_falls_back_to_imdsv1_when_no_token_is_issued(logs: io.StringIO) -> None:
    fake = FakeMetadata(v2=False)
    creds = await ecs(fake).fetch()
    assert creds.access_key_id == "STS.ecs-key"
    assert [token for _, _, token in fake.paths()[1:]] == [None, None]
    assert "credentials.imdsv1_fallback" in logs.getvalue()


async def test_ecs_without_imdsv1_refuses_the_fallback() -> None:
    fake = FakeMetadata(v2=False)
    with pytest.raises(CredentialsError, match="IMDSv1 is disabled"):
        await ecs(fake, imdsv1_disabled=True).fetch()
    assert [m for m, _, _ in fake.paths()] == ["PUT"]


async def test_ecs_unreachable_fails_at_once_without_a_v1_retry() -> None:
    fake = FakeMetadata()
    fake.unreachable = True
    with pytest.raises(CredentialsError, match=r"unreachable.*ECS instance"):
        await ecs(fake).fetch()
    assert len(fake.requests) == 1


async def test_ecs_uses_a_one_second_connect_timeout() -> None:
    fake = FakeMetadata()
    await ecs(fake).fetch()  # the default timeout
    assert METADATA_TIMEOUT.connect == 1.0
    assert all(r.extensions["timeout"]["connect"] == 1.0 for r in fake.requests)
    default = EcsRamRoleProvider()
    assert (
        default.describe() == "ECS RAM role (discovered) (metadata service http://100.100.100.200)"
    )


@pytest.mark.parametrize(
    ("role", "attached", "code", "message"),
    [
        (None, None, "Success", "no RAM role is attached"),
        ("other-role", ROLE, "Success", "'other-role' is not attached"),
        (ROLE, ROLE, "InternalError", "Code 'InternalError'"),
    ],
)
async def test_ecs_errors_say_what_is_wrong(
    role: str | None, attached: str | None, code: str, message: str
) -> None:
    fake = FakeMetadata(role=attached)
    fake.code = code
    with pytest.raises(CredentialsError, match=message):
        await ecs(fake, role).fetch()


async def test_ecs_answer_without_a_field_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, text=IMDS_TOKEN)
        return httpx.Response(200, json={"Code": "Success", "AccessKeyId": "STS.x"})

    provider = EcsRamRoleProvider(ROLE, transport=httpx.MockTransport(handler))
    with pytest.raises(CredentialsError, match="AccessKeySecret, SecurityToken"):
        await provider.fetch()


# -- STS AssumeRoleWithOIDC --------------------------------------------------------------


class FakeSts:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answer: Callable[[httpx.Request], httpx.Response] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answer is not None:
            return self.answer(request)
        return httpx.Response(
            200,
            json={
                "RequestId": "REQ-OK",
                "AssumedRoleUser": {"Arn": ROLE_ARN + "/s", "AssumedRoleId": "1:s"},
                "OIDCTokenInfo": {"Subject": "system:serviceaccount:dts:watcher"},
                "Credentials": {
                    "AccessKeyId": "STS.oidc-key",
                    "AccessKeySecret": SECRET,
                    "SecurityToken": STS_TOKEN,
                    "Expiration": "2026-11-28T13:00:00Z",
                },
            },
        )

    @staticmethod
    def form(request: httpx.Request) -> dict[str, str]:
        return dict(parse_qsl(request.content.decode()))

    @staticmethod
    def query(request: httpx.Request) -> dict[str, str]:
        return dict(parse_qsl(request.url.query.decode()))


def token_file(tmp_path: Path, token: str = OIDC_TOKEN) -> Path:
    path = tmp_path / "oidc-token"
    path.write_text(token + "\n")
    return path


def oidc(fake: FakeSts, path: Path, **options: Any) -> OidcRoleProvider:
    return OidcRoleProvider(
        ROLE_ARN,
        PROVIDER_ARN,
        path,
        transport=httpx.MockTransport(fake.handler),
        now=lambda: T0,
        **options,
    )


async def test_oidc_request_is_an_anonymous_form_post(tmp_path: Path) -> None:
    fake = FakeSts()
    creds = await oidc(fake, token_file(tmp_path)).fetch()
    (request,) = fake.requests
    assert request.method == "POST"
    assert f"{request.url.scheme}://{request.url.host}" == STS_ENDPOINT
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert FakeSts.query(request) == {
        "Action": "AssumeRoleWithOIDC",
        "Format": "JSON",
        "Version": "2015-04-01",
        "Timestamp": "2026-11-28T12:00:00Z",
    }
    assert FakeSts.form(request) == {
        "RoleArn": ROLE_ARN,
        "OIDCProviderArn": PROVIDER_ARN,
        "OIDCToken": OIDC_TOKEN,
        "RoleSessionName": f"dts-watcher-{int(T0.timestamp())}",
        "DurationSeconds": "3600",
    }
    assert "authorization" not in request.headers
    assert creds.access_key_id == "STS.oidc-key"
    assert creds.expiration == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)


async def test_oidc_session_name_and_duration_are_configurable(tmp_path: Path) -> None:
    fake = FakeSts()
    await oidc(fake, token_file(tmp_path), session_name="watcher-a", duration=900).fetch()
    form = FakeSts.form(fake.requests[0])
    assert form["RoleSessionName"] == "watcher-a" and form["DurationSeconds"] == "900"


def test_sts_endpoint_explicit_then_regional_then_central() -> None:
    assert sts_endpoint() == "https://sts.aliyuncs.com"
    assert sts_endpoint(None, "cn-shanghai") == "https://sts.cn-shanghai.aliyuncs.com"
    assert sts_endpoint("https://sts-vpc.cn-shanghai.aliyuncs.com/", "cn-beijing") == (
        "https://sts-vpc.cn-shanghai.aliyuncs.com"
    )


async def test_oidc_error_body_gives_code_message_and_request_id(tmp_path: Path) -> None:
    fake = FakeSts()
    fake.answer = lambda request: httpx.Response(
        400,
        json={
            "RequestId": "REQ-42",
            "HostId": "sts.aliyuncs.com",
            "Code": "AuthenticationFail.OIDCToken.Expired",
            "Message": f"The OIDCToken {OIDC_TOKEN} has expired.",
        },
    )
    with pytest.raises(CredentialsError) as caught:
        await oidc(fake, token_file(tmp_path)).fetch()
    text = str(caught.value)
    assert "AuthenticationFail.OIDCToken.Expired" in text
    assert "has expired" in text and "RequestId REQ-42" in text and "HTTP 400" in text
    assert ROLE_ARN in text
    assert OIDC_TOKEN not in text


async def test_oidc_answer_that_is_not_json(tmp_path: Path) -> None:
    fake = FakeSts()
    fake.answer = lambda request: httpx.Response(502, text="<html>Bad Gateway</html>")
    with pytest.raises(CredentialsError, match=r"not the expected JSON \(HTTP 502\)"):
        await oidc(fake, token_file(tmp_path)).fetch()


@pytest.mark.parametrize("content", [None, "  \n"])
async def test_oidc_token_file_missing_or_empty(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    fake = FakeSts()
    with pytest.raises(CredentialsError, match=f"OIDC token file {path}"):
        await oidc(fake, path).fetch()
    assert fake.requests == []


# -- the aliyun CLI profile file ---------------------------------------------------------


def write_profiles(path: Path, *profiles: dict[str, Any], current: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"profiles": list(profiles), "meta_path": ""}
    if current is not None:
        document["current"] = current
    path.write_text(json.dumps(document))
    return path


def ak(name: str, key: str = "LTAI-profile", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "mode": "AK",
        "access_key_id": key,
        "access_key_secret": SECRET,
        "sts_token": "",
        "region_id": "cn-hangzhou",
        "output_format": "json",
        **extra,
    }


async def test_profile_ak_mode(tmp_path: Path) -> None:
    path = write_profiles(tmp_path / "config.json", ak("default"))
    creds = await ProfileProvider(path).fetch()
    assert creds.access_key_id == "LTAI-profile"
    assert creds.access_key_secret.get_secret_value() == SECRET
    assert creds.security_token is None and creds.expiration is None


async def test_profile_sts_token_mode(tmp_path: Path) -> None:
    profile = ak("default", "STS.profile", mode="StsToken", sts_token=STS_TOKEN)
    path = write_profiles(tmp_path / "config.json", profile)
    creds = await ProfileProvider(path).fetch()
    assert creds.security_token is not None
    assert creds.security_token.get_secret_value() == STS_TOKEN


async def test_profile_sts_token_mode_without_a_token_is_an_error(tmp_path: Path) -> None:
    path = write_profiles(tmp_path / "config.json", ak("default", mode="StsToken"))
    with pytest.raises(CredentialsError, match="has no sts_token"):
        await ProfileProvider(path).fetch()


async def test_profile_without_a_mode_is_ak(tmp_path: Path) -> None:
    profile = ak("default")
    del profile["mode"]
    path = write_profiles(tmp_path / "config.json", profile)
    provider = ProfileProvider(path)
    assert provider.mode == "AK"
    assert (await provider.fetch()).access_key_id == "LTAI-profile"


@pytest.mark.parametrize(
    ("wanted", "current", "chosen"),
    [
        ("b", "a", "LTAI-b"),  # ALIBABA_CLOUD_PROFILE first
        (None, "a", "LTAI-a"),  # then the file's current
        (None, None, "LTAI-default"),  # then "default"
    ],
)
async def test_profile_selection(
    tmp_path: Path, wanted: str | None, current: str | None, chosen: str
) -> None:
    path = write_profiles(
        tmp_path / "config.json",
        ak("default", "LTAI-default"),
        ak("a", "LTAI-a"),
        ak("b", "LTAI-b"),
        current=current,
    )
    assert (await ProfileProvider(path, wanted).fetch()).access_key_id == chosen


def test_profile_that_is_not_there_lists_the_others(tmp_path: Path) -> None:
    path = write_profiles(tmp_path / "config.json", ak("default"), ak("prod"))
    with pytest.raises(CredentialsError, match=r"'staging' \(ALIBABA_CLOUD_PROFILE\).*default"):
        ProfileProvider(path, "staging")


@pytest.mark.parametrize("mode", ["RamRoleArn", "ChainableRamRoleArn", "External", "CloudSSO"])
def test_unsupported_profile_modes_are_refused_by_name(tmp_path: Path, mode: str) -> None:
    path = write_profiles(tmp_path / "config.json", ak("default", mode=mode))
    with pytest.raises(CredentialsError, match=f"mode '{mode}'.*not support"):
        ProfileProvider(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"current": "x"}', 'no "profiles" list')],
)
def test_profile_file_that_is_not_a_cli_config(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(CredentialsError, match=message):
        ProfileProvider(path)


async def test_profile_ecs_ram_role_mode_uses_the_metadata_service(tmp_path: Path) -> None:
    profile = {"name": "default", "mode": "EcsRamRole", "ram_role_name": ROLE}
    path = write_profiles(tmp_path / "config.json", profile)
    fake = FakeMetadata()
    provider = ProfileProvider(
        path, metadata_url="http://metadata.test", transport=httpx.MockTransport(fake.handler)
    )
    creds = await provider.fetch()
    assert creds.access_key_id == "STS.ecs-key" and creds.expiration is not None
    assert fake.paths()[-1] == (
        "GET",
        f"/latest/meta-data/ram/security-credentials/{ROLE}",
        IMDS_TOKEN,
    )


async def test_profile_oidc_mode_assumes_the_role(tmp_path: Path) -> None:
    profile = {
        "name": "default",
        "mode": "OIDC",
        "ram_role_arn": ROLE_ARN,
        "oidc_provider_arn": PROVIDER_ARN,
        "oidc_token_file": str(token_file(tmp_path)),
        "ram_session_name": "from-profile",
        "sts_region": "cn-shanghai",
        "expired_seconds": 1800,
    }
    path = write_profiles(tmp_path / "config.json", profile)
    fake = FakeSts()
    provider = ProfileProvider(path, transport=httpx.MockTransport(fake.handler), now=lambda: T0)
    assert (await provider.fetch()).access_key_id == "STS.oidc-key"
    (request,) = fake.requests
    assert request.url.host == "sts.cn-shanghai.aliyuncs.com"
    form = FakeSts.form(request)
    assert form["RoleArn"] == ROLE_ARN and form["OIDCToken"] == OIDC_TOKEN
    assert form["RoleSessionName"] == "from-profile" and form["DurationSeconds"] == "1800"


async def test_profile_refresh_rereads_the_file(tmp_path: Path) -> None:
    path = write_profiles(tmp_path / "config.json", ak("default", "LTAI-old"))
    provider = Refreshing(ProfileProvider(path))
    assert (await provider.get()).access_key_id == "LTAI-old"
    write_profiles(path, ak("default", "LTAI-new"))
    assert (await provider.get()).access_key_id == "LTAI-old"  # static: no renewal by time
    assert (await provider.refresh()).access_key_id == "LTAI-new"


# -- settings ----------------------------------------------------------------------------


def test_every_alibaba_variable_sets_its_knob(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(tmp_path / "token"),
        "ALIBABA_CLOUD_ROLE_SESSION_NAME": "my-session",
        "ALIBABA_CLOUD_STS_ENDPOINT": "sts-vpc.cn-shanghai.aliyuncs.com",
        "ALIBABA_CLOUD_STS_REGION": "cn-shanghai",
        "ALIBABA_CLOUD_PROFILE": "prod",
        "ALIBABA_CLOUD_CONFIG_FILE": str(tmp_path / "config.json"),
        "ALIBABA_CLOUD_ECS_METADATA": ROLE,
        "ALIBABA_CLOUD_IMDSV1_DISABLED": "true",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    c = load_settings().credentials
    assert (c.role_arn, c.oidc_provider_arn) == (ROLE_ARN, PROVIDER_ARN)
    assert c.oidc_token_file == tmp_path / "token"
    assert c.role_session_name == "my-session"
    assert c.sts_endpoint == "https://sts-vpc.cn-shanghai.aliyuncs.com"
    assert c.sts_region == "cn-shanghai"
    assert (c.profile, c.profile_file) == ("prod", tmp_path / "config.json")
    assert (c.ecs_ram_role, c.imdsv1_disabled) == (ROLE, True)
    assert c.ecs_metadata_url == "http://100.100.100.200" and c.role_session_duration == 3600


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "has spaces!"),
        ("ALIBABA_CLOUD_STS_REGION", "Not A Region"),
        ("ALIBABA_CLOUD_STS_ENDPOINT", "ftp://sts.example"),
        ("ALIBABA_CLOUD_IMDSV1_DISABLED", "maybe"),
        ("DTS_WATCHER_CREDENTIALS__ROLE_SESSION_DURATION", "60"),
    ],
)
def test_invalid_credential_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_unknown_credential_keys_are_still_rejected(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('[credentials]\nrole_arn = "acs:ram::1:role/x"\nrole = "typo"\n')
    with pytest.raises(ConfigError, match=r"credentials\.role .*unknown setting"):
        load_settings(config)


# -- the chain ---------------------------------------------------------------------------


def no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"building the chain must not call {request.url}")


NO_NETWORK = httpx.MockTransport(no_network)

SOURCES = ["static", "rrsa", "profile", "ecs"]


def configure_source(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if name == "static":
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-static")
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    elif name == "rrsa":
        monkeypatch.setenv("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN)
        monkeypatch.setenv("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER_ARN)
        monkeypatch.setenv("ALIBABA_CLOUD_OIDC_TOKEN_FILE", str(token_file(tmp_path)))
    elif name == "profile":
        write_profiles(Path.home() / ".aliyun" / "config.json", ak("default"))
    else:
        monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA", ROLE)


@pytest.mark.parametrize(
    ("winner", "described"),
    [
        ("static", "static access key LTAI-static"),
        ("rrsa", f"RRSA role {ROLE_ARN}"),
        ("profile", "profile 'default' (AK)"),
        ("ecs", f"ECS RAM role {ROLE}"),
    ],
)
def test_each_source_wins_over_the_later_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, winner: str, described: str
) -> None:
    for name in SOURCES[SOURCES.index(winner) :]:
        configure_source(name, monkeypatch, tmp_path)
    provider = provider_from_settings(load_settings(), transport=NO_NETWORK)
    assert describe(provider).startswith(described)
    expected = StaticProvider if winner == "static" else Refreshing
    assert type(provider) is expected


def test_nothing_configured_names_every_way_to_configure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The metadata URL alone does not enable the ECS source: off ECS, probing would hang.
    monkeypatch.setenv("DTS_WATCHER_CREDENTIALS__ECS_METADATA_URL", "http://169.254.0.1")
    with pytest.raises(CredentialsError) as caught:
        provider_from_settings(load_settings(), transport=NO_NETWORK)
    text = str(caught.value)
    assert text == NOTHING_FOUND
    for variable in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        "~/.aliyun/config.json",
        "ALIBABA_CLOUD_ECS_METADATA",
    ):
        assert variable in text


def test_discovering_the_ecs_role_must_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTS_WATCHER_CREDENTIALS__ECS_METADATA_ENABLED", "true")
    provider = provider_from_settings(load_settings(), transport=NO_NETWORK)
    assert describe(provider).startswith("ECS RAM role (discovered)")


def test_partial_rrsa_is_skipped_and_named(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN)
    with pytest.raises(CredentialsError, match="RRSA is only partly configured") as caught:
        provider_from_settings(load_settings(), transport=NO_NETWORK)
    assert "ALIBABA_CLOUD_OIDC_TOKEN_FILE" in str(caught.value)
    assert "credentials.rrsa_incomplete" in logs.getvalue()


def test_an_explicit_profile_file_must_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_CONFIG_FILE", str(tmp_path / "nope.json"))
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA", ROLE)  # not silently used instead
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_CONFIG_FILE"):
        provider_from_settings(load_settings(), transport=NO_NETWORK)


def test_a_named_profile_needs_its_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "prod")
    with pytest.raises(CredentialsError, match="'prod' \\(ALIBABA_CLOUD_PROFILE\\)"):
        provider_from_settings(load_settings(), transport=NO_NETWORK)


def test_profile_file_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_profiles(tmp_path / "elsewhere.json", ak("ci", "LTAI-ci"), current="ci")
    monkeypatch.setenv("ALIBABA_CLOUD_CONFIG_FILE", str(path))
    provider = provider_from_settings(load_settings(), transport=NO_NETWORK)
    assert describe(provider) == f"profile 'ci' (AK) in {path}"


def test_an_unsupported_profile_fails_when_the_chain_is_built() -> None:
    write_profiles(Path.home() / ".aliyun" / "config.json", ak("default", mode="RamRoleArn"))
    with pytest.raises(CredentialsError, match="RamRoleArn"):
        provider_from_settings(Settings(), transport=NO_NETWORK)


def test_the_chosen_source_is_logged_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, logs: io.StringIO
) -> None:
    configure_source("rrsa", monkeypatch, tmp_path)
    provider_from_settings(load_settings(), transport=NO_NETWORK)
    line = next(json.loads(x) for x in logs.getvalue().splitlines() if "credentials.source" in x)
    assert line["source"].startswith(f"RRSA role {ROLE_ARN}")
    assert line["level"] == "info"


# -- secrets -----------------------------------------------------------------------------


async def test_secrets_never_reach_logs_reprs_or_errors(tmp_path: Path, logs: io.StringIO) -> None:
    """Every path that talks about credentials, with every secret in play."""
    seen: list[str] = []
    clock = Clock(T0)

    # ECS: the session token and the issued key, renewed, then a failed renewal kept.
    fake = FakeMetadata()
    ecs_provider = Refreshing(ecs(fake), now=clock)
    creds = await ecs_provider.get()
    seen += [repr(creds), str(creds), repr(ecs_provider), describe(ecs_provider)]
    clock.at = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # in the renewal window
    fake.code = "InternalError"
    assert await ecs_provider.get() is creds  # kept, with a warning
    clock.at = datetime(2026, 11, 28, 18, 0, 1, tzinfo=UTC)  # expired
    with pytest.raises(CredentialsError) as expired:
        await ecs_provider.get()
    seen.append(str(expired.value))

    # STS: the OIDC token echoed back in an error message.
    sts = FakeSts()
    sts.answer = lambda request: httpx.Response(
        400, json={"Code": "InvalidParameter", "Message": f"bad {OIDC_TOKEN}", "RequestId": "R"}
    )
    oidc_provider = Refreshing(oidc(sts, token_file(tmp_path)), now=clock)
    with pytest.raises(CredentialsError) as refused:
        await oidc_provider.get()
    seen += [str(refused.value), repr(oidc_provider)]

    # Static keys and the profile file.
    static = StaticProvider(Credentials("LTAI-x", SecretStr(SECRET), SecretStr(STS_TOKEN)))
    seen += [repr(static), describe(static), repr(await static.get())]
    profile = ProfileProvider(
        write_profiles(tmp_path / "c.json", ak("default", mode="StsToken", sts_token=STS_TOKEN))
    )
    seen += [repr(profile), describe(profile), repr(await profile.fetch())]

    text = "\n".join(seen) + logs.getvalue()
    assert "renewal_failed" in text and "InvalidParameter" in text  # it did talk...
    for secret in (SECRET, STS_TOKEN, OIDC_TOKEN, IMDS_TOKEN):
        assert secret not in text  # ...and said nothing secret
