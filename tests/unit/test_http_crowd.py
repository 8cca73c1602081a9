"""The HTTP endpoint under a crowd of idle and slow clients (issue 12, item 11): 64 idle
connections used to take every slot, and `/healthz` answered 503 for as long as they
stayed (a liveness probe would have restarted the container). Real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.abc
import httpx
import pytest

from watcher import http as endpoint
from watcher.http import serve_http
from watcher.metrics import Metrics
from watcher.status import Status

pytestmark = pytest.mark.anyio


@pytest.fixture
async def port() -> AsyncIterator[int]:
    status = Status()
    async with anyio.create_task_group() as tg:
        bound: int = await tg.start(serve_http, status, Metrics(status), "127.0.0.1", 0)
        yield bound
        tg.cancel_scope.cancel()


async def crowd(port: int, n: int) -> list[anyio.abc.SocketStream]:
    """`n` connections that say nothing, or half a request head a byte at a time."""
    streams = []
    for i in range(n):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        if i % 2:
            await stream.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        streams.append(stream)
    return streams


async def test_healthz_answers_while_every_slot_is_held(port: int) -> None:
    streams = await crowd(port, endpoint.MAX_CONNECTIONS + 16)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            health = await http.get("/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            assert (await http.head("/healthz")).status_code == 200
            busy = await http.get("/metrics")  # the rest waits for a slot
            assert (busy.status_code, busy.text) == (503, "too many connections\n")
    finally:
        for stream in streams:
            await stream.aclose()


async def test_a_client_that_never_finishes_its_request_head_is_let_go(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoint, "HEADER_TIMEOUT", 0.5, raising=False)
    monkeypatch.setattr(endpoint, "CONNECTION_DEADLINE", 3600.0)  # not what ends it
    (idle, slow) = await crowd(port, 2)
    with anyio.fail_after(30):  # well before the connection deadline
        for stream in (idle, slow):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while True:
                    await stream.receive()
    # and a keep-alive client idling after its request is let go the same way
    async with await anyio.connect_tcp("127.0.0.1", port) as client:
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        with anyio.fail_after(30):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while True:
                    answer += await client.receive()
        assert answer.startswith(b"HTTP/1.1 200")
