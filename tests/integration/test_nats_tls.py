"""TLS to NATS cannot be stripped: when TLS is configured, the connection is TLS or there is
none, and not one byte of a credential goes out in the clear (issue 17, item 1).

The hostile peer is `FakeNats` (tests/support/fakenats.py), a server on loopback whose INFO
does not say `tls_required`, as a man in the middle would answer; the friendly one is the
real nats-server with a certificate."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.cli import cli_env, json_lines, run_cli, watcher_env
from tests.support.fakenats import FakeNats
from tests.support.hostile import self_signed
from tests.support.watcher import make_settings
from watcher.errors import PublishError
from watcher.events import watcher_event
from watcher.logs import configure
from watcher.probe import probe_nats
from watcher.publish import Publisher
from watcher.settings import NatsSettings
from watcher.store import Store

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SECRETS = {"password": "s3cret-pw-1", "token": "t0ken-secret-2"}


def one_event() -> Any:
    from datetime import UTC, datetime

    return watcher_event("started", "info", datetime.now(UTC), {"version": "test"})


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("cryptography.x509")
    return self_signed(tmp_path)


@pytest.mark.parametrize(
    ("scheme", "auth", "extra"),
    [
        ("tls", {"user": "watcher", "password": SECRETS["password"]}, {}),
        ("tls", {"token": SECRETS["token"]}, {}),
        ("nats", {"user": "watcher", "password": SECRETS["password"]}, {"ca": True}),
    ],
    ids=["tls-url-password", "tls-url-token", "nats-url-with-ca-file"],
)
async def test_a_server_that_does_not_offer_tls_gets_nothing(
    tmp_path: Path,
    certs: tuple[Path, Path],
    scheme: str,
    auth: dict[str, str],
    extra: dict[str, bool],
) -> None:
    cert, _ = certs
    with FakeNats() as fake:
        settings = NatsSettings(
            url=f"{scheme}://127.0.0.1:{fake.port}",
            connect_timeout=1,
            publish_timeout=1,
            **({"tls_ca_file": cert} if extra.get("ca") else {}),
            **auth,
        )
        with Store.open(tmp_path / "state.db") as store:
            store.add_events([one_event()], "dts")
            publisher = Publisher(settings, store)
            try:
                with pytest.raises(PublishError) as refused:
                    await publisher.drain()
            finally:
                await publisher.close()
            assert store.outbox_depth() == 1  # the event waits
        assert fake.connections >= 1  # it was asked, and told nothing
        seen = fake.seen()
        for secret in SECRETS.values():
            assert secret.encode() not in seen
        assert b"CONNECT" not in seen
        assert "TLS is configured, but the server did not start TLS" in str(refused.value)


async def test_the_probe_names_a_server_that_does_not_offer_tls(
    tmp_path: Path, certs: tuple[Path, Path]
) -> None:
    cert, _ = certs
    with FakeNats() as fake:
        settings = make_settings(
            tmp_path,
            f"tls://127.0.0.1:{fake.port}",
            "http://127.0.0.1:1",
            ["cn-hangzhou"],
            nats={"tls_ca_file": cert, "token": SECRETS["token"]},
        )
        verdict = await probe_nats(settings)
        seen = fake.seen()
    assert not verdict.ok
    assert "did not start TLS" in verdict.message, verdict.message
    assert SECRETS["token"].encode() not in seen and b"CONNECT" not in seen


def test_once_and_tail_refuse_a_server_that_does_not_offer_tls(
    tmp_path: Path, certs: tuple[Path, Path], simulator: Simulator
) -> None:
    cert, _ = certs
    simulator.add_job({"id": "dtstls01", "region": "cn-hangzhou"})
    with FakeNats() as fake:
        env = watcher_env(
            tmp_path / "state.sqlite3",
            f"tls://127.0.0.1:{fake.port}",
            simulator.url,
            ["cn-hangzhou"],
            DTS_WATCHER_NATS__TOKEN=SECRETS["token"],
            DTS_WATCHER_NATS__TLS_CA_FILE=str(cert),
            DTS_WATCHER_NATS__CONNECT_TIMEOUT="1",
        )
        once = run_cli("once", "--publish-timeout", "5", env=env, cwd=tmp_path, timeout=60)
        assert once.returncode == 1, once.stderr
        assert "TLS is configured, but the server did not start TLS" in once.stderr
        # bounded: the run is killed (and the test fails) long before --wait would end it
        tail = run_cli("tail", "--wait", "3600", env=env, cwd=tmp_path, timeout=60)
        assert tail.returncode == 1, tail.stderr
        assert "TLS is configured, but the server did not start TLS" in tail.stderr
        seen = fake.seen()
        assert b"CONNECT" not in seen and SECRETS["token"].encode() not in seen


@pytest.mark.wall_clock  # OpenSSL checks the certificate against the real clock
async def test_with_a_real_tls_server_the_log_says_tls(
    tmp_path: Path, certs: tuple[Path, Path]
) -> None:
    cert, key = certs
    store_dir = tmp_path / "nats"
    store_dir.mkdir()
    tls_args = ("--tls", "--tlscert", str(cert), "--tlskey", str(key))
    with NatsServer(store_dir=store_dir, extra_args=tls_args) as ns:
        settings = NatsSettings(url=f"tls://127.0.0.1:{ns.port}", tls_ca_file=cert)
        with Store.open(tmp_path / "state.db") as store:
            store.add_events([one_event()], "dts")
            publisher = Publisher(settings, store)
            logged = io.StringIO()
            configure("info", "json", stream=logged)
            try:
                assert await publisher.drain() == 1
            finally:
                await publisher.close()
    connected = [
        line for line in json_lines(logged.getvalue()) if line["event"] == "nats.connected"
    ]
    assert connected and connected[0]["tls"] is True


@pytest.mark.wall_clock
async def test_tls_handshake_first_with_a_server_that_wants_it(
    tmp_path: Path, certs: tuple[Path, Path]
) -> None:
    cert, key = certs
    store_dir = tmp_path / "nats"
    store_dir.mkdir()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n  handshake_first: true\n}}\n'
    )
    server = NatsServer(store_dir=store_dir, extra_args=("-c", str(conf)), says_info_first=False)
    with server as ns:
        settings = NatsSettings(
            url=f"tls://127.0.0.1:{ns.port}", tls_ca_file=cert, tls_handshake_first=True
        )
        with Store.open(tmp_path / "state.db") as store:
            store.add_events([one_event()], "dts")
            publisher = Publisher(settings, store)
            try:
                assert await publisher.drain() == 1
            finally:
                await publisher.close()


@pytest.mark.wall_clock
def test_tail_names_an_untrusted_certificate_in_bounded_time(
    tmp_path: Path, certs: tuple[Path, Path]
) -> None:
    cert, key = certs
    store_dir = tmp_path / "nats"
    store_dir.mkdir()
    tls_args = ("--tls", "--tlscert", str(cert), "--tlskey", str(key))
    with NatsServer(store_dir=store_dir, extra_args=tls_args) as ns:
        env = cli_env(
            {
                "DTS_WATCHER_NATS__URL": f"tls://127.0.0.1:{ns.port}",  # no CA: untrusted
                "DTS_WATCHER_NATS__CONNECT_TIMEOUT": "1",
            }
        )
        tail = run_cli("tail", "--wait", "3600", env=env, cwd=tmp_path, timeout=60)
    assert tail.returncode == 1
    assert "TLS handshake failed" in tail.stderr
    assert "certificate verify failed" in tail.stderr
