"""Credential sources against hostile servers and files (issue 17, and 12.1's class).

A metadata service or STS on 127.0.0.1 that drips, answers hundreds of megabytes, makes
up codes, echoes the OIDC token in its RequestId, or issues keys no HTTP header can
carry; an OIDC token file that is a FIFO or 300 MB; a profile file others can read. Each
must end as that source's failure (the region: CredentialsUnavailable), within a
deadline and bounded memory, with nothing secret or unbounded in what is said.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.clock import Clock
from tests.support.hostile import (
    Answer,
    Dts,
    HostileServer,
    Request,
    capture_logs,
    job_record,
    json_answer,
    stream_of,
)
from watcher.dts.client import DtsClient
from watcher.dts.credentials import provider_from_settings
from watcher.probe import probe_dts
from watcher.settings import Settings
from watcher.snapshot import Snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

GUARD = 60.0
ROLE = "dts-watcher-role"
ROLE_ARN = "acs:ram::1234567890:role/dts-watcher"
PROVIDER_ARN = "acs:ram::1234567890:oidc-provider/ack-rrsa-c123"
SECRET, TOKEN = "issued-secret-NEVERshown", "issued-token-NEVERshown"
OIDC = "eyJhbGciOiJSUzI1NiJ9.oidc-token-NEVERshown.c2lnbmF0dXJl"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def issued(
    key_id: str = "STS.issued",
    secret: str = SECRET,
    token: str = TOKEN,
    expiration: datetime | None = None,
    code: Any = "Success",
) -> dict[str, Any]:
    expires = expiration or datetime.now(UTC) + timedelta(hours=6)
    return {
        "AccessKeyId": key_id,
        "AccessKeySecret": secret,
        "SecurityToken": token,
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Code": code,
    }


def metadata(credentials: Answer) -> Any:
    """The ECS metadata service, with `credentials` as the role's answer."""

    def app(request: Request) -> Answer:
        if request.path == "/latest/api/token":
            return Answer(200, [], b"session-token")
        if request.path == "/latest/meta-data/ram/security-credentials/":
            return Answer(200, [], ROLE.encode())
        return credentials

    return app


def ecs_settings(metadata_url: str, dts_url: str, **credentials: Any) -> Settings:
    return Settings(
        dts={"regions": ["cn-hangzhou"], "endpoint": dts_url, "max_attempts": 1},
        credentials={
            "ecs_metadata_enabled": True,
            "ecs_metadata_url": metadata_url,
            **credentials,
        },
    )


async def read_once(settings: Settings, now: Any = None) -> Snapshot:
    provider = (
        provider_from_settings(settings, now=now) if now else provider_from_settings(settings)
    )
    with anyio.fail_after(GUARD):
        async with DtsClient(settings.dts, provider) as client:
            return await client.fetch()


def failure(snapshot: Snapshot) -> str:
    outcome = snapshot.regions["cn-hangzhou"]
    assert outcome.error_code == "CredentialsUnavailable", outcome
    return outcome.error or ""


# -- 17.3 (and 12.1): what a source issues is checked like configured keys ----------------


@pytest.mark.parametrize(
    "answer",
    [
        issued(token=TOKEN[:8] + "\n" + TOKEN[8:]),
        issued(token=TOKEN + "\r\nX-Injected: yes"),
        issued(key_id="STS.\u00efssued"),
        issued(secret="s\u00e9cret-NEVERshown"),
        issued(token="tok\u2028en-NEVERshown"),
    ],
    ids=["token-newline", "token-injection", "key-id-non-ascii", "secret-non-ascii", "token-ls"],
)
async def test_keys_no_header_can_carry_are_the_sources_failure_and_never_shown(
    answer: dict[str, Any],
) -> None:
    dts = Dts({"cn-hangzhou": [job_record("a")]})
    with (
        HostileServer(metadata(json_answer(answer))) as meta,
        HostileServer(dts) as server,
        capture_logs() as logs,
    ):
        snapshot = await read_once(ecs_settings(meta.url, server.url))
        verdicts = await probe_dts(ecs_settings(meta.url, server.url))
    error = failure(snapshot)
    assert "issued" in error and "character" in error
    said = logs.text + repr(snapshot) + json.dumps(snapshot.to_dict(), default=str)
    said += "\n".join(str(v) for v in verdicts)
    assert "NEVERshown" not in said and "Injected" not in said
    assert not server.seen  # nothing was sent to DTS with them
    assert not verdicts[0].ok and "character" in verdicts[0].message


async def test_a_trailing_newline_on_an_issued_token_is_stripped_as_for_configured_ones() -> None:
    dts = Dts({"cn-hangzhou": [job_record("a")]})
    answer = json_answer(issued(token=TOKEN + "\n", key_id=" STS.issued\t"))
    with HostileServer(metadata(answer)) as meta, HostileServer(dts) as server:
        snapshot = await read_once(ecs_settings(meta.url, server.url))
    assert snapshot.complete
    assert server.seen[0].headers["x-acs-security-token"] == TOKEN
    assert "Credential=STS.issued," in server.seen[0].headers["authorization"]


# -- 17.2: a deadline on every fetch --------------------------------------------------------


async def test_a_metadata_service_dripping_its_answer_fails_within_the_fetch_deadline() -> None:
    body = json.dumps(issued()).encode()
    drip = Answer(200, [("Content-Type", "application/json")], body, drip=0.2)
    with HostileServer(metadata(drip)) as meta, HostileServer(Dts()) as server:
        snapshot = await read_once(ecs_settings(meta.url, server.url, fetch_timeout=1))
    assert "no credentials within 1s" in failure(snapshot)


def oidc_settings(token_file: Path, sts_url: str, dts_url: str, **credentials: Any) -> Settings:
    return Settings(
        dts={"regions": ["cn-hangzhou"], "endpoint": dts_url, "max_attempts": 1},
        credentials={
            "role_arn": ROLE_ARN,
            "oidc_provider_arn": PROVIDER_ARN,
            "oidc_token_file": token_file,
            "sts_endpoint": sts_url,
            **credentials,
        },
    )


def sts(answer: Answer) -> Any:
    return lambda request: answer


async def test_an_oidc_token_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    unblock = threading.Timer(GUARD / 2, _open_for_writing, (fifo,))  # for the code before
    unblock.start()
    try:
        with HostileServer(sts(json_answer({}))) as sts_server, HostileServer(Dts()) as server:
            snapshot = await read_once(
                oidc_settings(fifo, sts_server.url, server.url, fetch_timeout=2)
            )
    finally:
        unblock.cancel()
    assert "not a regular file" in failure(snapshot)
    assert not sts_server.seen


def _open_for_writing(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


# -- 17.5: caps on what sources answer, and on how long keys are believed --------------------


async def test_a_huge_token_file_is_refused_and_never_posted(tmp_path: Path) -> None:
    token = tmp_path / "token"
    with token.open("wb") as handle:
        handle.truncate(300 << 20)  # 300 MB, sparse: nothing written, nothing to wait for
    with HostileServer(sts(json_answer({}))) as sts_server, HostileServer(Dts()) as server:
        snapshot = await read_once(oidc_settings(token, sts_server.url, server.url))
    assert "larger than" in failure(snapshot)
    assert not sts_server.seen


def test_a_huge_metadata_answer_is_refused_in_bounded_memory() -> None:
    huge = Answer(200, [("Content-Type", "application/json")], stream_of(64 << 20))
    with HostileServer(metadata(huge)) as meta, HostileServer(Dts()) as server:
        tracemalloc.start()
        try:
            snapshot = anyio.run(read_once, ecs_settings(meta.url, server.url))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "larger than" in failure(snapshot)
    assert peak < 16 << 20, f"{peak:,} bytes held for a 64 KiB answer cap"


async def test_an_expiration_in_year_9999_is_capped_at_twelve_hours() -> None:
    now = Clock(datetime.now(UTC).replace(microsecond=0))
    answer = issued(expiration=datetime(9999, 12, 31, tzinfo=UTC))
    with HostileServer(metadata(json_answer(answer))) as meta, capture_logs() as logs:
        provider = provider_from_settings(ecs_settings(meta.url, "https://dts.test"), now=now)
        with anyio.fail_after(GUARD):
            credentials = await provider.get()
    assert credentials.expiration == now() + timedelta(hours=12)
    (warning,) = logs.events("credentials.expiration_capped")
    assert warning["said"].startswith("9999-12-31")


# -- 17.4: upstream strings bounded, the OIDC token masked ----------------------------------


async def test_a_huge_metadata_code_is_bounded() -> None:
    answer = issued(code="Denied" + "!" * 20_000)  # within the answer cap, far over a line
    answer["Message"] = "\x1b]52;c;" + "A" * 20_000
    with HostileServer(metadata(json_answer(answer))) as meta, HostileServer(Dts()) as server:
        snapshot = await read_once(ecs_settings(meta.url, server.url))
    error = failure(snapshot)
    assert "Denied" in error and len(error) < 1000 and "\x1b" not in error


async def test_an_sts_request_id_that_echoes_the_oidc_token_is_masked(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(OIDC)
    for request_id in (OIDC, OIDC.split(".")[1]):
        refusal = json_answer(
            {
                "Code": "AuthenticationFail.OIDCToken.Invalid",
                "Message": "no",
                "RequestId": request_id,
            },
            400,
        )
        with HostileServer(sts(refusal)) as sts_server, HostileServer(Dts()) as server:
            snapshot = await read_once(oidc_settings(token, sts_server.url, server.url))
        error = failure(snapshot)
        assert "AuthenticationFail.OIDCToken.Invalid" in error
        assert "NEVERshown" not in error and "RequestId ***" in error


# -- 17.7: a profile file others can read ------------------------------------------------------


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_a_profile_file_others_can_read_is_warned_about(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    profile = tmp_path / "config.json"
    document = {
        "current": "default",
        "profiles": [
            {"name": "default", "mode": "AK", "access_key_id": "LTAIx", "access_key_secret": "s"}
        ],
    }
    profile.write_text(json.dumps(document))
    profile.chmod(mode)
    settings = Settings(credentials={"profile_file": profile})
    with capture_logs() as logs:
        provider_from_settings(settings)
    warnings = logs.events("credentials.profile_permissions")
    assert bool(warnings) == warned
    if warned:
        assert warnings[0]["mode"] == f"{mode:04o}"
        assert "chmod 600" in warnings[0]["advice"]
