"""`check-config --probe` as a library: real calls to the simulator and a real nats-server,
and the plain-words verdict each kind of misconfiguration gets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer, free_port
from tests.support.hostile import self_signed
from tests.support.watcher import make_settings
from watcher.probe import Verdict, probe
from watcher.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

REGIONS = ["cn-hangzhou", "cn-shanghai"]


def settings_for(
    tmp_path: Path, nats_url: str, dts_url: str, regions: list[str] = REGIONS, **sections: Any
) -> Settings:
    return make_settings(tmp_path, nats_url, dts_url, regions, **sections)


def by_check(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.check: v for v in verdicts}


async def test_everything_right_passes_and_says_what_it_saw(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    for n in range(3):
        simulator.add_job({"id": f"j{n}", "region": "cn-hangzhou"})
    verdicts = await probe(settings_for(tmp_path, nats_server.url, simulator.url))
    assert [v.check for v in verdicts] == [
        "DTS credentials",
        "DTS cn-hangzhou",
        "DTS cn-shanghai",
        "NATS",
    ]
    assert all(v.ok for v in verdicts), verdicts
    checks = by_check(verdicts)
    assert "3 jobs visible" in checks["DTS cn-hangzhou"].message
    assert "0 jobs visible: is the region right?" in checks["DTS cn-shanghai"].message
    assert "stream DTS_EVENTS does not exist yet" in checks["NATS"].message
    assert str(checks["NATS"]).startswith("ok   NATS: connected to 127.0.0.1:")
    # exactly one call per region, with PageSize 10
    requests = simulator.requests
    assert sorted(r.region or "" for r in requests) == REGIONS
    assert {r.page_size for r in requests} == {10}


async def test_a_misspelled_region_with_no_jobs_fails_the_probe_with_a_guess(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, nats_server.url, simulator.url, ["cn-hangzou"])
    verdict = by_check(await probe(settings))["DTS cn-hangzou"]
    assert not verdict.ok
    assert "0 jobs visible" in verdict.message and "did you mean 'cn-hangzhou'?" in verdict.message
    # a region DTS opened after this release: named in allow_regions, it is trusted
    allowed = settings_for(
        tmp_path,
        nats_server.url,
        simulator.url,
        ["cn-hangzou"],
        dts={"allow_regions": ["cn-hangzou"]},
    )
    assert by_check(await probe(allowed))["DTS cn-hangzou"].ok


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (
            {"access_key_id": "LTAI-typo", "access_key_secret": "whatever"},
            "the access key id is unknown (InvalidAccessKeyId.NotFound)",
        ),
        (
            {"access_key_secret": "not-the-secret"},
            "signature rejected: the secret does not match the key id (SignatureDoesNotMatch)",
        ),
    ],
    ids=["unknown-key", "wrong-secret"],
)
async def test_wrong_credentials_are_named(
    tmp_path: Path,
    nats_server: NatsServer,
    simulator: Simulator,
    credentials: dict[str, str],
    expected: str,
) -> None:
    settings = settings_for(
        tmp_path, nats_server.url, simulator.url, ["cn-hangzhou"], credentials=credentials
    )
    checks = by_check(await probe(settings))
    assert str(checks["DTS cn-hangzhou"]) == f"FAIL DTS cn-hangzhou: {expected}"
    assert checks["NATS"].ok


async def test_no_permission_is_named_per_region(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.inject({"kind": "forbidden", "region": "cn-shanghai", "count": -1})
    checks = by_check(await probe(settings_for(tmp_path, nats_server.url, simulator.url)))
    assert checks["DTS cn-hangzhou"].ok
    assert checks["DTS cn-shanghai"].message == (
        "the key has no permission for dts:DescribeSynchronizationJobs (Forbidden.RAM)"
    )


async def test_missing_credentials_fail_before_any_call(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aliyun/config.json to fall back on
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    none = {"access_key_id": None, "access_key_secret": None}
    settings = settings_for(tmp_path, nats_server.url, simulator.url, credentials=none)
    verdicts = await probe(settings)
    assert [v.check for v in verdicts] == ["DTS credentials", "NATS"]
    assert not verdicts[0].ok and "credentials" in verdicts[0].message.lower()
    assert verdicts[1].ok
    assert simulator.requests == []


async def test_unreachable_dts_endpoints_are_told_apart(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    _, port = simulator.address
    cases = {
        "http://nonexistent.invalid:8080": "host not found (DNS): nonexistent.invalid",
        f"http://127.0.0.1:{free_port()}": "connection refused at 127.0.0.1:",
        f"https://127.0.0.1:{port}": f"TLS handshake failed with https://127.0.0.1:{port}: ",
    }
    for url, expected in cases.items():
        settings = settings_for(tmp_path, nats_server.url, url, ["cn-hangzhou"])
        verdict = by_check(await probe(settings))["DTS cn-hangzhou"]
        assert not verdict.ok
        assert verdict.message.startswith(expected), (url, verdict)


async def test_unreachable_nats_is_told_apart(tmp_path: Path, simulator: Simulator) -> None:
    cases = {
        "nats://nonexistent.invalid:4222": "host not found (DNS): nonexistent.invalid",
        f"nats://127.0.0.1:{free_port()}": "connection refused at 127.0.0.1:",
    }
    for url, expected in cases.items():
        verdict = by_check(await probe(settings_for(tmp_path, url, simulator.url)))["NATS"]
        assert not verdict.ok
        assert verdict.message.startswith(expected), (url, verdict)


async def test_nats_authorization_failure_is_named(tmp_path: Path, simulator: Simulator) -> None:
    with NatsServer(store_dir=tmp_path, extra_args=("--user", "watcher", "--pass", "right")) as ns:
        wrong = settings_for(
            tmp_path, ns.url, simulator.url, nats={"user": "watcher", "password": "wrong"}
        )
        verdict = by_check(await probe(wrong))["NATS"]
        assert not verdict.ok and verdict.message.startswith("authorization failed at nats://")
        right = settings_for(
            tmp_path, ns.url, simulator.url, nats={"user": "watcher", "password": "right"}
        )
        assert by_check(await probe(right))["NATS"].ok


async def test_nats_without_jetstream_fails(tmp_path: Path, simulator: Simulator) -> None:
    with NatsServer(store_dir=tmp_path, jetstream=False) as ns:
        verdict = by_check(await probe(settings_for(tmp_path, ns.url, simulator.url)))["NATS"]
    assert not verdict.ok
    assert verdict.message.endswith("but JetStream is not enabled for this account")


async def test_an_existing_stream_is_checked(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DTS_EVENTS", subjects=["dts.>"])
        await js.publish("dts.watcher.started", b"{}")
        await js.add_stream(name="OTHER", subjects=["other.>"])
    finally:
        await nc.close()
    good = by_check(await probe(settings_for(tmp_path, nats_server.url, simulator.url)))["NATS"]
    assert good.ok and good.message.endswith("stream DTS_EVENTS holds 1 events")
    bad_settings = settings_for(tmp_path, nats_server.url, simulator.url, nats={"stream": "OTHER"})
    bad = by_check(await probe(bad_settings))["NATS"]
    assert not bad.ok
    assert "stream OTHER does not capture dts.>" in bad.message


# -- TLS: a real nats-server with a certificate the client does or does not trust ----------


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    pytest.importorskip("cryptography.x509")
    yield self_signed(tmp_path)


@pytest.mark.wall_clock  # OpenSSL checks the certificate against the real clock
async def test_an_untrusted_nats_certificate_is_named(
    tmp_path: Path, simulator: Simulator, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    store = tmp_path / "nats"
    store.mkdir()
    tls_args = ("--tls", "--tlscert", str(cert), "--tlskey", str(key))
    with NatsServer(store_dir=store, extra_args=tls_args) as ns:
        untrusted = settings_for(tmp_path, f"tls://127.0.0.1:{ns.port}", simulator.url)
        verdict = by_check(await probe(untrusted))["NATS"]
        assert not verdict.ok
        assert verdict.message.startswith("TLS handshake failed with tls://127.0.0.1:")
        assert "certificate verify failed" in verdict.message
        trusted = settings_for(
            tmp_path, f"tls://127.0.0.1:{ns.port}", simulator.url, nats={"tls_ca_file": cert}
        )
        assert by_check(await probe(trusted))["NATS"].ok
