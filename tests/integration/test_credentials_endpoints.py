"""Credential sources against real HTTP servers on 127.0.0.1, and DTS end to end.

The ECS metadata service and STS are small fakes built on the standard library's
ThreadingHTTPServer (a thread each, as the DTS simulator does), so the sources go
through real sockets, real HTTP and httpx's real transport: the IMDSv2 PUT, the headers,
the form-encoded STS call. The last tests put the whole path together: credentials
from these fakes, renewed on an injected clock, signing requests that the project's DTS
simulator checks (it accepts only the STS keys it is given, each with its own token).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from dts_sim import Simulator
from tests.support.clock import Clock
from watcher.cli import main
from watcher.dts.client import DtsClient
from watcher.dts.credentials import (
    CredentialsError,
    EcsRamRoleProvider,
    describe,
    provider_from_settings,
)
from watcher.service import open_watcher
from watcher.settings import Settings, load_settings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
ROLE = "dts-watcher-role"
ROLE_ARN = "acs:ram::1234567890:role/dts-watcher"
PROVIDER_ARN = "acs:ram::1234567890:oidc-provider/ack-rrsa-c123"
REGIONS = ["cn-hangzhou", "cn-shanghai"]  # the demo scenario's
# STS keys the simulator accepts: id -> (secret, security token)
KEYS = {f"STS.key{n}": (f"secret-{n}-never-logged", f"token-{n}-never-logged") for n in range(1, 4)}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


# -- a tiny real HTTP server -------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


Reply = tuple[int, dict[str, str], bytes]


def legacy_jobs(sim: Simulator) -> list[Any]:
    """The jobs the legacy listing shows: synchronization jobs (the demo has others)."""
    return [job for job in sim.jobs() if job.job_type == "sync"]


def reply(status: int, body: Any = b"", content_type: str = "application/json") -> Reply:
    if isinstance(body, str):
        return status, {"Content-Type": "text/plain"}, body.encode()
    if isinstance(body, bytes):
        return status, {"Content-Type": "text/plain"}, body
    return status, {"Content-Type": content_type}, json.dumps(body).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup (slow on some hosts)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])


class FakeServer:
    """ThreadingHTTPServer on 127.0.0.1 in a thread; `app(seen)` makes every answer."""

    def __init__(self, app: Callable[[Seen], Reply]) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def __enter__(self) -> FakeServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: nothing left open

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                split = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    split.path,
                    dict(parse_qsl(split.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with outer._lock:
                    outer.seen.append(seen)
                status, headers, body = outer.app(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"


# -- the ECS metadata service ------------------------------------------------------------


class MetadataService:
    """100.100.100.200 as ECS serves it: IMDSv2 session tokens (or not), the attached RAM
    role, and that role's temporary key, valid six hours from the (injected) clock."""

    def __init__(
        self, clock: Clock, *, v2: bool = True, enforce_v2: bool = False, role: str | None = ROLE
    ) -> None:
        self.clock = clock
        self.v2 = v2
        self.enforce_v2 = enforce_v2
        self.role = role
        self.key = "STS.key1"
        self.code = "Success"
        self.status = 200
        self.sessions: list[str] = []

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == "/latest/api/token":
            if not self.v2:
                return reply(404, "Not Found")
            ttl = seen.headers.get("x-aliyun-ecs-metadata-token-ttl-seconds", "")
            if seen.method != "PUT" or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return reply(400, "Bad Request")
            session = f"session-{uuid.uuid4().hex}"
            self.sessions.append(session)
            return reply(200, session)
        session = seen.headers.get("x-aliyun-ecs-metadata-token")
        if session is not None and session not in self.sessions:
            return reply(401, "Unauthorized")
        if session is None and self.enforce_v2:
            return reply(403, "Forbidden")
        prefix = "/latest/meta-data/ram/security-credentials/"
        if seen.path == prefix:
            return reply(200, self.role) if self.role else reply(404, "Not Found")
        if self.role is None or seen.path != prefix + self.role:
            return reply(404, "Not Found")
        if self.status != 200:
            return reply(self.status, "Internal Server Error")
        secret, token = KEYS[self.key]
        return reply(
            200,
            {
                "AccessKeyId": self.key,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": (self.clock() + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "LastUpdated": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Code": self.code,
            },
        )


def session_headers(server: FakeServer) -> list[tuple[str, str, str | None]]:
    return [(s.method, s.path, s.headers.get("x-aliyun-ecs-metadata-token")) for s in server.seen]


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


async def test_imdsv2_token_flow(clock: Clock) -> None:
    service = MetadataService(clock)
    with FakeServer(service) as server:
        creds = await EcsRamRoleProvider(metadata_url=server.url).fetch()
    (session,) = service.sessions
    assert session_headers(server) == [
        ("PUT", "/latest/api/token", None),
        ("GET", "/latest/meta-data/ram/security-credentials/", session),
        ("GET", f"/latest/meta-data/ram/security-credentials/{ROLE}", session),
    ]
    assert server.seen[0].headers["x-aliyun-ecs-metadata-token-ttl-seconds"] == "21600"
    assert creds.access_key_id == "STS.key1"
    assert creds.access_key_secret.get_secret_value() == KEYS["STS.key1"][0]
    assert creds.expiration == T0 + timedelta(hours=6)


async def test_imdsv1_fallback_when_the_service_issues_no_token(clock: Clock) -> None:
    service = MetadataService(clock, v2=False)
    with FakeServer(service) as server:
        creds = await EcsRamRoleProvider(ROLE, metadata_url=server.url).fetch()
    assert creds.access_key_id == "STS.key1"
    assert session_headers(server) == [
        ("PUT", "/latest/api/token", None),
        ("GET", f"/latest/meta-data/ram/security-credentials/{ROLE}", None),
    ]


async def test_imdsv1_disabled_means_no_tokenless_read(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = MetadataService(clock, v2=False)
    with FakeServer(service) as server:
        monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA", ROLE)
        monkeypatch.setenv("ALIBABA_CLOUD_IMDSV1_DISABLED", "true")
        monkeypatch.setenv("DTS_WATCHER_CREDENTIALS__ECS_METADATA_URL", server.url)
        provider = provider_from_settings(load_settings(), now=clock)
        with pytest.raises(CredentialsError, match=r"no IMDSv2 session token \(HTTP 404\)"):
            await provider.get()
    assert [s.method for s in server.seen] == ["PUT"]


async def test_imdsv2_enforced_is_served_with_the_token(clock: Clock) -> None:
    service = MetadataService(clock, enforce_v2=True)
    with FakeServer(service) as server:
        creds = await EcsRamRoleProvider(metadata_url=server.url).fetch()
    assert creds.access_key_id == "STS.key1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role": None}, "no RAM role is attached to this ECS instance"),
        ({"code": "Failed"}, "credentials not issued, Code 'Failed'"),
        ({"status": 500}, "answered HTTP 500"),
    ],
)
async def test_metadata_errors(clock: Clock, change: dict[str, Any], message: str) -> None:
    service = MetadataService(clock)
    for name, value in change.items():
        setattr(service, name, value)
    with FakeServer(service) as server, pytest.raises(CredentialsError, match=message):
        await EcsRamRoleProvider(metadata_url=server.url).fetch()


async def test_a_role_name_that_is_not_attached(clock: Clock) -> None:
    with (
        FakeServer(MetadataService(clock)) as server,
        pytest.raises(CredentialsError, match=r"'other' is not attached.*HTTP 404"),
    ):
        await EcsRamRoleProvider("other", metadata_url=server.url).fetch()


async def test_nothing_listening_is_reported_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CredentialsError, match="unreachable"):
        await EcsRamRoleProvider(metadata_url=f"http://127.0.0.1:{port}").fetch()


# -- STS AssumeRoleWithOIDC --------------------------------------------------------------


class StsService:
    """STS's AssumeRoleWithOIDC: accepts `valid_tokens`, hands out KEYS in turn."""

    def __init__(self, clock: Clock, valid_tokens: set[str]) -> None:
        self.clock = clock
        self.valid_tokens = valid_tokens
        self.issued = 0

    def __call__(self, seen: Seen) -> Reply:
        request_id = f"REQ-{uuid.uuid4().hex[:8]}"
        query, form = seen.query, seen.form

        def refuse(code: str, message: str) -> Reply:
            return reply(400, {"RequestId": request_id, "Code": code, "Message": message})

        if seen.method != "POST" or seen.path != "/":
            return reply(404, {"RequestId": request_id, "Code": "InvalidAction.NotFound"})
        if (query.get("Action"), query.get("Version"), query.get("Format")) != (
            "AssumeRoleWithOIDC",
            "2015-04-01",
            "JSON",
        ) or "Timestamp" not in query:
            return refuse("InvalidParameter", "Action, Version, Format or Timestamp is wrong")
        for name in ("RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"):
            if not form.get(name):
                return refuse("MissingParameter", f"{name} is mandatory for this action")
        if form["OIDCToken"] not in self.valid_tokens:
            return refuse("AuthenticationFail.OIDCToken.Invalid", "The OIDCToken is invalid.")
        self.issued += 1
        key = f"STS.key{self.issued}"
        secret, token = KEYS[key]
        seconds = int(form.get("DurationSeconds", "3600"))
        return reply(
            200,
            {
                "RequestId": request_id,
                "AssumedRoleUser": {"Arn": f"{form['RoleArn']}/{form['RoleSessionName']}"},
                "Credentials": {
                    "AccessKeyId": key,
                    "AccessKeySecret": secret,
                    "SecurityToken": token,
                    "Expiration": (self.clock() + timedelta(seconds=seconds)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                },
            },
        )


def rrsa_env(monkeypatch: pytest.MonkeyPatch, sts_url: str, token_file: Path) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER_ARN)
    monkeypatch.setenv("ALIBABA_CLOUD_OIDC_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("ALIBABA_CLOUD_STS_ENDPOINT", sts_url)


async def test_assume_role_with_oidc(
    clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("jwt-one")
    with FakeServer(StsService(clock, {"jwt-one"})) as sts:
        rrsa_env(monkeypatch, sts.url, token_file)
        monkeypatch.setenv("ALIBABA_CLOUD_ROLE_SESSION_NAME", "watcher-pod-1")
        provider = provider_from_settings(load_settings(), now=clock)
        creds = await provider.get()
    assert creds.access_key_id == "STS.key1"
    assert creds.expiration == T0 + timedelta(hours=1)
    (seen,) = sts.seen
    assert seen.form == {
        "RoleArn": ROLE_ARN,
        "OIDCProviderArn": PROVIDER_ARN,
        "OIDCToken": "jwt-one",
        "RoleSessionName": "watcher-pod-1",
        "DurationSeconds": "3600",
    }
    assert seen.query["Timestamp"] == "2026-11-28T12:00:00Z"
    assert "authorization" not in seen.headers and "Signature" not in seen.query


async def test_a_rotated_token_file_is_read_again(
    clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("jwt-one")
    with FakeServer(StsService(clock, {"jwt-one", "jwt-two"})) as sts:
        rrsa_env(monkeypatch, sts.url, token_file)
        provider = provider_from_settings(load_settings(), now=clock)
        assert (await provider.get()).access_key_id == "STS.key1"
        token_file.write_text("jwt-two")  # the kubelet rotated it
        clock.advance(minutes=49)  # within 12 minutes (20 % of an hour) of expiry
        assert (await provider.get()).access_key_id == "STS.key2"
    assert [s.form["OIDCToken"] for s in sts.seen] == ["jwt-one", "jwt-two"]


async def test_sts_error_body_is_reported(
    clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("jwt-stale")
    with FakeServer(StsService(clock, {"jwt-fresh"})) as sts:
        rrsa_env(monkeypatch, sts.url, token_file)
        provider = provider_from_settings(load_settings(), now=clock)
        with pytest.raises(CredentialsError) as caught:
            await provider.get()
    text = str(caught.value)
    assert "AuthenticationFail.OIDCToken.Invalid: The OIDCToken is invalid." in text
    assert "HTTP 400, RequestId REQ-" in text
    assert "jwt-stale" not in text


# -- end to end: the DTS client on renewed credentials -----------------------------------


def dts_settings(sim: Simulator, **credentials: Any) -> Settings:
    return Settings(
        dts={
            "regions": REGIONS,
            "endpoint": sim.url,
            "rate_limit": 20,
            "backoff_initial": 0.01,
            "backoff_max": 0.02,
            "timeout": 5,
        },
        credentials=credentials,
    )


def keys_used(sim: Simulator) -> set[str | None]:
    used = {r.access_key_id for r in sim.requests}
    sim.clear_requests()
    return used


async def test_dts_client_follows_renewed_ecs_credentials(clock: Clock) -> None:
    service = MetadataService(clock)
    with FakeServer(service) as metadata, Simulator("demo", sts_credentials=KEYS) as sim:
        settings = dts_settings(sim, ecs_ram_role=ROLE, ecs_metadata_url=metadata.url)
        provider = provider_from_settings(settings, now=clock)
        async with DtsClient(settings.dts, provider) as client:
            first = await client.fetch()
            assert first.complete and len(first) == len(legacy_jobs(sim))
            assert keys_used(sim) == {"STS.key1"}

            service.key = "STS.key2"  # ECS rotated the role's key
            clock.advance(hours=4, minutes=47)  # 73 min (20 % of 6 h, plus) before expiry
            assert (await client.fetch()).complete
            assert keys_used(sim) == {"STS.key1"}  # not yet due
            clock.advance(minutes=2)
            assert (await client.fetch()).complete
            assert keys_used(sim) == {"STS.key2"}

            # DTS says the token expired before we thought: one refresh, then the new key.
            service.key = "STS.key3"
            sim.inject({"kind": "expired_token", "region": "cn-hangzhou"})
            assert (await client.fetch()).complete
            records = sim.requests
    # (cn-shanghai is read concurrently, with whichever key is current at that moment)
    assert [(r.access_key_id, r.code) for r in records if r.region == "cn-hangzhou"] == [
        ("STS.key2", "InvalidSecurityToken.Expired"),
        ("STS.key3", "Success"),
    ]


async def test_metadata_outage_keeps_a_valid_key_then_reports_the_region_blind(
    clock: Clock,
) -> None:
    service = MetadataService(clock)
    with FakeServer(service) as metadata, Simulator("demo", sts_credentials=KEYS) as sim:
        settings = dts_settings(sim, ecs_ram_role=ROLE, ecs_metadata_url=metadata.url)
        provider = provider_from_settings(settings, now=clock)
        async with DtsClient(settings.dts, provider) as client:
            assert (await client.fetch()).complete
            service.status = 500  # the metadata service fails from now on
            clock.advance(hours=5)  # renewal due, key still valid for an hour
            assert (await client.fetch()).complete
            assert keys_used(sim) == {"STS.key1"}
            clock.advance(hours=1, seconds=1)  # now it has expired
            snapshot = await client.fetch()
    assert not snapshot.complete
    outcome = snapshot.regions["cn-hangzhou"]
    assert outcome.error_code == "CredentialsUnavailable"
    assert "answered HTTP 500" in (outcome.error or "")
    assert KEYS["STS.key1"][0] not in (outcome.error or "")


async def test_open_watcher_reads_dts_with_rrsa_credentials(
    clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("jwt-one")
    with (
        FakeServer(StsService(clock, {"jwt-one"})) as sts,
        Simulator("demo", sts_credentials=KEYS) as sim,
    ):
        rrsa_env(monkeypatch, sts.url, token_file)
        monkeypatch.setenv("DTS_WATCHER_DTS__ENDPOINT", sim.url)
        monkeypatch.setenv("DTS_WATCHER_DTS__REGIONS", json.dumps(REGIONS))
        monkeypatch.setenv("DTS_WATCHER_STATE__PATH", str(tmp_path / "state.sqlite3"))
        async with open_watcher(load_settings(), now=clock) as watcher:
            snapshot = await watcher.client.fetch()
    assert snapshot.complete and len(snapshot) == len(legacy_jobs(sim))
    assert keys_used(sim) == {"STS.key1"}
    assert len(sts.seen) == 1


def test_snapshot_command_uses_the_profile_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret, token = KEYS["STS.key2"]
    config = tmp_path / "aliyun.json"
    profile = {
        "name": "dts",
        "mode": "StsToken",
        "access_key_id": "STS.key2",
        "access_key_secret": secret,
        "sts_token": token,
    }
    config.write_text(json.dumps({"current": "dts", "profiles": [profile]}))
    try:
        with Simulator("demo", sts_credentials=KEYS) as sim:
            monkeypatch.setenv("ALIBABA_CLOUD_CONFIG_FILE", str(config))
            monkeypatch.setenv("DTS_WATCHER_DTS__ENDPOINT", sim.url)
            monkeypatch.setenv("DTS_WATCHER_DTS__REGIONS", json.dumps(REGIONS))
            code = main(["snapshot", "--log-format", "json"])
            assert keys_used(sim) == {"STS.key2"}
    finally:
        logging.getLogger().handlers.clear()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["complete"] is True
    source = next(json.loads(x) for x in err.splitlines() if "credentials.source" in x)
    assert source["source"] == f"profile 'dts' (StsToken) in {config}"
    assert secret not in out + err and token not in out + err


def test_describe_names_the_source_without_a_secret(clock: Clock) -> None:
    with FakeServer(MetadataService(clock)) as metadata:
        provider = provider_from_settings(
            Settings(credentials={"ecs_ram_role": ROLE, "ecs_metadata_url": metadata.url})
        )
    assert describe(provider) == f"ECS RAM role {ROLE} (metadata service {metadata.url})"
