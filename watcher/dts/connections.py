"""The DTS client's connections: a lean HTTP/1.1 transport for httpx (h11 on anyio).

A listing is hundreds of small GETs a cycle, at a steady pace, to one host per shard.
httpx's own transport (httpcore) pays, for each of them, for a general connection pool:
a check of every pooled connection (a system call asking whether the server closed it),
several layers of streams and context managers, its event hooks. Measured, that was
most of what a steady cycle cost beyond the synchronous floor (benchmarks, measure 1:
the HTTP client and event loop 733 ms a cycle with httpcore, 346 ms with this;
docs/performance.md). This transport does what the DTS client needs, and no more:

- HTTP/1.1, plain or over TLS (the client's `SSLContext`, the host name checked); the
  request's body in memory (the client sends GETs); no proxies (the client trusts no
  proxy from the environment), no HTTP/2;
- keep-alive: a connection whose exchange ended cleanly (the answer read to its end,
  both sides done with the message) goes back to its origin's pool, and is taken again,
  the one idle longest first (requests go round the connections), while it has been
  idle less than `keepalive` seconds; any other
  end (an error, a cancellation, an answer not read to its end, `Connection: close`)
  closes it;
- a reused connection that the server closed while it was idle, so that it ends before
  the first byte of an answer (end of stream, or a reset), is not a failure: the request
  goes once more, on a new connection. Only then: a request that got any part of an
  answer, or that went out on a new connection, is never sent again here (the client's
  own retries decide, with a new signature);
- at most `max_connections` connections at once per origin; a request beyond waits;
- failures as httpx's exceptions (`ConnectError`, `ConnectTimeout`, `ReadError`,
  `RemoteProtocolError`, `LocalProtocolError`), the original as their
  cause: `upstream.transport_reason` reads the chain (DNS, refused, TLS) and never the
  texts, which may quote a header;
- the `trace` extension, as httpcore calls it, for `http11.send_request_headers.complete`
  once the request's head is written (the client's pacing counts from then).

The whole exchange's deadline is the caller's (`exchange` runs it under `fail_after`);
here only connecting honours the request's own connect timeout.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import h11
import httpx

_READ = 65536
_DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host, port


class _Stale(Exception):
    """The connection ended before the first byte of an answer."""


class _Connection:
    """One socket (or TLS stream) and the h11 state of the exchanges on it."""

    __slots__ = ("h11", "idle_since", "received", "stream")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.received = 0  # bytes of the current answer so far

    async def send(self, data: bytes) -> None:
        """Write a request: nothing of its answer has come yet, so a connection that
        breaks here is one the server had closed (`_Stale`)."""
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _Stale from exc

    async def next_event(self) -> Any:
        """The next h11 event of the answer, reading from the socket as needed."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError("the server broke the HTTP protocol") from exc
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive(_READ)
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                if self.received == 0:
                    raise _Stale from exc
                raise httpx.ReadError("the connection broke while reading") from exc
            if not data and self.received == 0:
                raise _Stale
            self.received += len(data)
            self.h11.receive_data(data)

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def close(self) -> None:
        await anyio.aclose_forcefully(self.stream)


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; closing it hands the connection back (or closes it)
    and frees its slot."""

    def __init__(self, pool: Http11Transport, origin: Origin, conn: _Connection) -> None:
        self._pool = pool
        self._origin = origin
        self._conn: _Connection | None = conn
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        while True:
            event = await conn.next_event()
            if type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) is h11.EndOfMessage:
                self._ended = True
                return
            elif type(event) is h11.ConnectionClosed:
                raise httpx.RemoteProtocolError("the server closed the connection mid-answer")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(self._origin, conn, reuse=self._ended)


class Http11Transport(httpx.AsyncBaseTransport):
    """See the module docstring. One per DTS shard (each has its own host and pace)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_connections: int = 4,
        keepalive: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl = ssl_context
        self._max = max_connections
        self._keepalive = keepalive
        self._clock = clock
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots: dict[Origin, anyio.Semaphore] = {}
        self._closed = False
        self.opened = 0  # connections opened so far (tests and curiosity)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        url = request.url
        origin: Origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80))
        slot = self._slots.get(origin)
        if slot is None:
            slot = self._slots[origin] = anyio.Semaphore(self._max)
        await slot.acquire()
        try:
            conn, head = await self._exchange(origin, request)
        except BaseException:
            slot.release()
            raise
        return httpx.Response(
            head.status_code,
            headers=head.headers,
            stream=_Body(self, origin, conn),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(head.reason)},
        )

    async def release(self, origin: Origin, conn: _Connection, *, reuse: bool) -> None:
        """An answer done with: its connection back to the pool, or closed; its slot free."""
        try:
            if reuse and not self._closed and conn.reusable():
                conn.h11.start_next_cycle()
                conn.received = 0
                conn.idle_since = self._clock()
                self._idle.setdefault(origin, []).append(conn)
            else:
                await conn.close()
        finally:
            self._slots[origin].release()

    async def aclose(self) -> None:
        self._closed = True
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        for conn in idle:
            await conn.close()

    # -- one exchange -----------------------------------------------------------------

    async def _exchange(self, origin: Origin, request: httpx.Request) -> tuple[_Connection, Any]:
        """(the connection, the answer's head), the request sent again once if a reused
        connection turned out closed."""
        conn = await self._reusable(origin)
        if conn is not None:
            try:
                return conn, await self._send(conn, request)
            except _Stale:
                await conn.close()
            except BaseException:
                await conn.close()
                raise
        conn = await self._connect(origin, request)
        try:
            return conn, await self._send(conn, request)
        except _Stale as exc:
            await conn.close()
            raise httpx.RemoteProtocolError("the server closed the connection unanswered") from (
                exc.__cause__
            )
        except BaseException:
            await conn.close()
            raise

    async def _reusable(self, origin: Origin) -> _Connection | None:
        """The connection of `origin` idle the longest, if it is young enough: requests go
        round the connections instead of all to one (measured: the simulator, a thread
        per connection, answered the benchmark's changes with a p99 of 1.45 s instead of
        2.37 s). Older ones are closed (nothing is sent on them)."""
        idle = self._idle.get(origin)
        now = self._clock()
        while idle:
            conn = idle.pop(0)
            if now - conn.idle_since < self._keepalive:
                return conn
            await conn.close()
        return None

    async def _connect(self, origin: Origin, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        tls = scheme == "https"
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            with anyio.fail_after(timeout):
                if tls:
                    stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                        host,
                        port,
                        ssl_context=self._tls_context(),
                        tls_hostname=host,
                        tls_standard_compatible=False,
                    )
                else:
                    stream = await anyio.connect_tcp(host, port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("no connection within the connect timeout") from exc
        except OSError as exc:  # DNS, refused, unreachable, TLS (ssl.SSLError is one)
            raise httpx.ConnectError("cannot connect") from exc
        self.opened += 1
        return _Connection(stream)

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _send(self, conn: _Connection, request: httpx.Request) -> Any:
        """Write the request, then read up to the answer's head (skipping 1xx)."""
        try:
            head = conn.h11.send(
                h11.Request(
                    method=request.method,
                    target=request.url.raw_path,
                    headers=request.headers.raw,
                )
            )
            body = request.content
            data = head + (conn.h11.send(h11.Data(data=body)) if body else b"")
            data += conn.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:  # a header h11 will not write
            raise httpx.LocalProtocolError("the request cannot be written") from exc
        await conn.send(data)
        trace = request.extensions.get("trace")
        if trace is not None:
            await trace("http11.send_request_headers.complete", {"request": request})
        while True:
            event = await conn.next_event()
            if type(event) is h11.Response:
                return event
            if type(event) is h11.ConnectionClosed:
                raise _Stale
            # an informational (1xx) answer: the real one follows
