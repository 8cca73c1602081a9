"""The DTS client's own HTTP/1.1 transport (`watcher.dts.connections`), against a real
TCP server on 127.0.0.1 that answers as scripted, byte for byte: keep-alive, servers that
close idle connections, answers cut short, limits, cancellation, and the errors'
causes. The DTS client's other tests (the simulator, hostile servers, TLS, pacing on the
wire) run through this transport too."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import httpx
import pytest
from pydantic import SecretStr

from dts_sim.natsserver import free_port
from tests.support.hostile import Dts, HostileServer, job_record
from watcher import __version__
from watcher.dts.client import DtsClient
from watcher.dts.connections import Http11Transport
from watcher.dts.credentials import Credentials, StaticProvider
from watcher.dts.upstream import transport_reason
from watcher.settings import DtsSettings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Script:
    """What the server does with the n-th request it reads (over all connections): the
    bytes to answer (None: close without answering), and whether to close afterwards."""

    answer: Callable[[int], bytes | None] = lambda n: OK
    close_after: Callable[[int], bool] = lambda n: False
    hold: anyio.Event | None = None  # answers wait for it
    requests: list[bytes] = field(default_factory=list)
    on: list[int] = field(default_factory=list)  # the connection (1, 2...) of each request
    connections: int = 0
    open_now: int = 0
    most_open: int = 0


async def _serve_one(stream: anyio.abc.SocketStream, script: Script) -> None:
    script.connections += 1
    number = script.connections
    script.open_now += 1
    script.most_open = max(script.most_open, script.open_now)
    buffer = b""
    try:
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                n = len(script.requests)
                script.requests.append(head)
                script.on.append(number)
                if script.hold is not None:
                    await script.hold.wait()
                answer = script.answer(n)
                if answer is None:
                    return
                await stream.send(answer)
                if script.close_after(n):
                    return
    finally:
        script.open_now -= 1


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[str]:
    port = free_port()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    async with anyio.create_task_group() as tg:

        async def handle(stream: anyio.abc.SocketStream) -> None:
            await _serve_one(stream, script)

        tg.start_soon(listener.serve, handle)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def get(client: httpx.AsyncClient, url: str) -> bytes:
    async with client.stream("GET", url) as response:
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_one_connection_serves_request_after_request() -> None:
    script = Script()
    transport = Http11Transport()
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        bodies = [await get(client, f"{url}/page/{n}") for n in range(5)]
    assert bodies == [b"ok"] * 5
    assert script.connections == transport.opened == 1
    assert [head.split(b" ")[1] for head in script.requests] == [
        f"/page/{n}".encode() for n in range(5)
    ]


async def test_requests_go_round_the_kept_connections() -> None:
    # Two connections opened by two requests at once; then one request at a time takes the
    # one idle the longest: they alternate instead of one doing all the work.
    script = Script(hold=anyio.Event())
    transport = Http11Transport()
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(get, client, url)
            tg.start_soon(get, client, url)
            await anyio.wait_all_tasks_blocked()
            script.hold.set()
        for _ in range(4):
            await get(client, url)
    assert transport.opened == 2
    later = script.on[2:]
    assert sorted(set(later)) == [1, 2]
    assert all(a != b for a, b in itertools.pairwise(later))


async def test_a_connection_the_server_closed_while_idle_is_replaced_unnoticed() -> None:
    # The server closes every connection after its answer, without saying so: the next
    # request finds the kept connection dead and goes again, once, on a new one.
    script = Script(close_after=lambda n: True)
    transport = Http11Transport()
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        assert [await get(client, url) for _ in range(3)] == [b"ok"] * 3
    assert script.connections == transport.opened == 3
    assert len(script.requests) == 3  # each request read by the server once


async def test_a_request_read_but_never_answered_is_sent_again_once_then_fails() -> None:
    # The first request is answered; then the server reads requests and closes without a
    # byte of answer. The reused connection's failure is taken for a stale connection (one
    # more try, on a new connection); the new connection's, for the server's.
    script = Script(answer=lambda n: OK if n == 0 else None)
    transport = Http11Transport()
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        assert await get(client, url) == b"ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await get(client, url)
    assert len(script.requests) == 3
    assert transport.opened == 2


async def test_an_answer_cut_short_fails_and_its_connection_is_not_kept() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    script = Script(answer=lambda n: cut if n == 0 else OK, close_after=lambda n: n == 0)
    transport = Http11Transport()
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await get(client, url)
        assert await get(client, url) == b"ok"
    assert transport.opened == 2
    assert len(script.requests) == 2  # the cut one was not sent again


async def test_connection_close_and_unread_answers_are_not_kept() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    script = Script(answer=lambda n: closing if n == 0 else OK, close_after=lambda n: n == 0)
    transport = Http11Transport()
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        assert await get(client, url) == b"ok"  # Connection: close
        async with client.stream("GET", url):
            pass  # the answer is not read
        assert await get(client, url) == b"ok"
    assert transport.opened == 3


async def test_chunked_answers_and_informational_ones_are_read() -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    script = Script(answer=lambda n: chunked)
    transport = Http11Transport()
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        assert await get(client, url) == b"abcde"
        assert await get(client, url) == b"abcde"
    assert transport.opened == 1


async def test_an_idle_connection_older_than_the_keepalive_is_not_taken() -> None:
    clock = Clock()
    script = Script()
    transport = Http11Transport(keepalive=5.0, clock=clock)
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        await get(client, url)
        clock.now += 4.9
        await get(client, url)
        assert transport.opened == 1
        clock.now += 5.0
        await get(client, url)
    assert transport.opened == 2


async def test_no_more_connections_than_allowed_are_open_at_once() -> None:
    script = Script(hold=anyio.Event())
    transport = Http11Transport(max_connections=2)
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        bodies: list[bytes] = []

        async def one() -> None:
            bodies.append(await get(client, url))

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            assert len(script.requests) == 2  # the other four wait for a slot
            script.hold.set()
    assert bodies == [b"ok"] * 6
    assert script.most_open == 2


async def test_a_cancelled_exchange_closes_its_connection_and_frees_its_slot() -> None:
    script = Script(hold=anyio.Event())
    transport = Http11Transport(max_connections=1)
    async with serving(script) as url, httpx.AsyncClient(transport=transport) as client:
        with anyio.move_on_after(0.2):
            await get(client, url)  # the server holds it
        script.hold.set()
        assert await get(client, url) == b"ok"  # the one slot is free again
    assert transport.opened == 2


async def test_failures_keep_their_cause_and_never_quote_a_header() -> None:
    transport = Http11Transport()
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError) as refused:
            await get(client, f"http://127.0.0.1:{free_port()}/")
        assert transport_reason(refused.value) == "connection refused"
        secret = "token-\n-secret"
        script = Script()
        async with serving(script) as url:
            with pytest.raises(httpx.LocalProtocolError) as bad:
                await client.get(url, headers={"X-Token": secret})
        assert "secret" not in str(bad.value)
        assert script.requests == []


async def test_a_closed_transport_opens_nothing() -> None:
    transport = Http11Transport()
    await transport.aclose()
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/")
    assert transport.opened == 0


async def test_the_dts_client_says_who_it_is() -> None:
    # Through the whole client (no httpx client in between): DTS sees the watcher's name
    # and version, the host, the signature and the encodings it may answer in.
    dts = Dts({"cn-hangzhou": [job_record(f"j{n:02}") for n in range(90)]})
    provider = StaticProvider(Credentials("ua-key", SecretStr("ua-secret"), None))
    with HostileServer(dts) as server:
        settings = DtsSettings(regions=["cn-hangzhou"], endpoint=server.url)
        async with DtsClient(settings, provider) as client:
            snapshot = await client.fetch()
        seen, host = list(server.seen), server.url.split("://", 1)[1]
    assert snapshot.complete and len(snapshot) == 90
    assert len(seen) == 3
    for request in seen:
        assert request.headers["user-agent"] == f"dts-watcher/{__version__}"
        assert request.headers["accept-encoding"] == "gzip, deflate"
        assert request.headers["host"] == host
        assert request.headers["authorization"].startswith("ACS3-HMAC-SHA256 ")
