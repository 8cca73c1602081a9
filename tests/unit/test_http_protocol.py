"""The HTTP endpoint as a client meets it: paths, methods, keep-alive, bad requests.

The service behind it is a bare status value (what readiness reads); the server itself
is real (a loopback TCP listener), and so is the byte stream a client sends.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import httpx
import pytest

from watcher.http import HttpServeError, serve_http
from watcher.metrics import Metrics
from watcher.status import Status

pytestmark = pytest.mark.anyio


class Nats:
    connected = False


@dataclass
class Server:
    status: Status
    nats: Nats
    metrics: Metrics
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def raw(self, data: bytes) -> bytes:
        """Send bytes, read until the server closes (or 5 s pass)."""
        stream = await anyio.connect_tcp("127.0.0.1", self.port)
        async with stream:
            await stream.send(data)
            out = b""
            with anyio.move_on_after(5):
                try:
                    while True:
                        out += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
            return out


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    nats = Nats()
    status = Status(nats_connected=lambda: nats.connected)
    metrics = Metrics(status)
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, status, metrics, "127.0.0.1", 0)
        yield Server(status, nats, metrics, port)
        tg.cancel_scope.cancel()


async def test_the_three_paths_answer_get_and_head(server: Server) -> None:
    server.status.last_complete = datetime.now(UTC)
    server.nats.connected = True
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")
        assert (await http.get("/readyz?verbose=1")).text == "ready\n"  # query ignored
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "dts_watcher_cycles_total" in metrics.text
        head = await http.head("/metrics")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0


async def test_readiness_names_each_missing_condition(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/readyz")
        assert r.status_code == 503
        assert r.text.splitlines() == [
            "not ready:",
            "- no complete cycle yet: DTS has not been read completely since start",
            "- not connected to NATS: events wait in the outbox",
        ]
        server.nats.connected = True
        r = await http.get("/readyz")
        assert r.status_code == 503 and "NATS" not in r.text
        server.status.last_complete = datetime.now(UTC)
        assert (await http.get("/readyz")).status_code == 200


async def test_metrics_can_be_negotiated_as_openmetrics(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


async def test_unknown_paths_and_other_methods_are_refused(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/")).status_code == 404
        assert (await http.get("/metrics/extra")).status_code == 404
        post = await http.post("/metrics", content=b"x" * 1000)
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        assert (await http.delete("/healthz")).status_code == 405
        # the connection survives all of that
        assert (await http.get("/healthz")).status_code == 200


async def test_several_requests_on_one_connection(server: Server) -> None:
    reply = await server.raw(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert reply.count(b"HTTP/1.1 ") == 3
    assert reply.count(b"HTTP/1.1 200") == 2 and b"HTTP/1.1 503" in reply


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",  # TLS hello
        b"GET\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n",
    ],
    ids=["tls-hello", "no-target", "bad-header", "huge-header"],
)
async def test_a_bad_request_gets_an_error_and_the_server_keeps_serving(
    server: Server, garbage: bytes
) -> None:
    reply = await server.raw(garbage)
    assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), reply[:100]
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_client_that_connects_and_goes_away_costs_nothing(server: Server) -> None:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)):
            pass  # closed without a byte
    stream = await anyio.connect_tcp("127.0.0.1", server.port)
    await stream.send(b"GET /heal")  # half a request, then gone
    await stream.aclose()
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_failing_metrics_collector_answers_500_and_the_server_survives(
    server: Server,
) -> None:
    class Broken:
        def describe(self) -> list[object]:
            return []

        def collect(self) -> list[object]:
            raise RuntimeError("boom")

    server.metrics.registry.register(Broken())  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/metrics")).status_code == 500
        assert (await http.get("/healthz")).status_code == 200


async def test_a_silent_client_is_disconnected_at_the_deadline(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watcher.http

    monkeypatch.setattr(watcher.http, "CONNECTION_DEADLINE", 0.2)
    with anyio.fail_after(5):  # the server closes long before this
        assert await server.raw(b"") == b""


async def test_a_taken_port_is_reported_naming_the_settings(server: Server) -> None:
    with pytest.raises(HttpServeError, match=rf"127\.0\.0\.1:{server.port} .*HTTP__PORT"):
        await serve_http(server.status, server.metrics, "127.0.0.1", server.port)
