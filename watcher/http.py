"""The HTTP endpoint: `/healthz`, `/readyz` and `/metrics`, for orchestrators and Prometheus.

    /healthz   200 "ok" while the process is serving at all (liveness)
    /readyz    200 "ready" once a complete cycle has been read and while NATS is
               connected; 503 with the reason(s), one per line, otherwise (readiness)
    /metrics   Prometheus text format (OpenMetrics when the scraper asks for it)

It runs inside the watcher's task group (`serve_http`, started with `tg.start`), on
anyio's TCP listener, with h11 doing the HTTP/1.1 parsing: no web framework, no thread.
Only GET and HEAD are served (405 on a known path, 404 on any other). A bad or slow
client costs one connection, never the service: every connection has a deadline, each
request head must arrive within `HEADER_TIMEOUT` (a client that sends its headers a byte
at a time, or idles between keep-alive requests, is let go), a size limit (h11's), a cap
on how many are open at once, and its errors are logged at debug level and dropped.

Liveness must not depend on who else is connected: when all `MAX_CONNECTIONS` slots are
taken (idle or slow clients holding them), a new connection still gets one request,
within `OVERFLOW_TIMEOUT`: `/healthz` is answered `200 ok` as ever, anything else `503
too many connections`. Only past `MAX_OVERFLOW` such connections at once is one closed
unanswered.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute

from watcher.errors import ConfigError
from watcher.logs import get_logger
from watcher.metrics import Metrics
from watcher.status import Status

log = get_logger("watcher.http")

MAX_CONNECTIONS = 64
MAX_OVERFLOW = 1024  # connections beyond the slots, answering /healthz only
CONNECTION_DEADLINE = 30.0  # seconds a client has for all its requests on one connection
HEADER_TIMEOUT = 10.0  # seconds for a request's head to arrive (slow clients, idle ones)
OVERFLOW_TIMEOUT = 2.0  # the same, for a connection beyond the slots
_RECEIVE = 16384
_PATHS = ("/healthz", "/readyz", "/metrics")


class HttpServeError(ConfigError):
    """The endpoint cannot listen; the message names the address and the settings."""


class _Response:
    def __init__(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]


async def _respond(status: Status, metrics: Metrics, request: h11.Request) -> _Response:
    method = request.method.decode("ascii", "replace").upper()
    target = request.target.decode("ascii", "replace")
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path not in _PATHS:
        return _Response(404, b"not found: try /healthz, /readyz or /metrics\n")
    if method not in ("GET", "HEAD"):
        response = _Response(405, b"method not allowed: GET or HEAD\n")
        response.headers.append(("Allow", "GET, HEAD"))
        return response
    if path == "/healthz":
        return _Response(200, b"ok\n")
    if path == "/readyz":
        reasons = status.readiness()
        if reasons:
            text = "not ready:\n" + "".join(f"- {reason}\n" for reason in reasons)
            return _Response(503, text.encode())
        return _Response(200, b"ready\n")
    accept = _header(request.headers, b"accept")
    body, content_type = await metrics.render(accept)
    return _Response(200, body, content_type)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send(
    stream: anyio.abc.ByteStream, conn: h11.Connection, event: h11.Event | h11.Data
) -> None:
    data = conn.send(event)
    if data:
        await stream.send(data)


async def _serve_connection(
    stream: anyio.abc.ByteStream,
    status: Status,
    metrics: Metrics,
    *,
    health_only: bool = False,
) -> None:
    """Serve requests until the client is done or a deadline passes. `health_only`:
    one request, `/healthz` answered and anything else 503 (no slot was free)."""
    conn = h11.Connection(h11.SERVER)
    head_timeout = OVERFLOW_TIMEOUT if health_only else HEADER_TIMEOUT
    with anyio.move_on_after(head_timeout if health_only else CONNECTION_DEADLINE):
        head_by = anyio.current_time() + head_timeout
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    with anyio.fail_after(max(0.0, head_by - anyio.current_time())):
                        data = await stream.receive(_RECEIVE)
                except TimeoutError:
                    return  # the head did not come in time: let the connection go
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                try:
                    if health_only:
                        response = _health_only(event)
                    else:
                        response = await _respond(status, metrics, event)
                except Exception:  # a bug here: answer 500, keep serving
                    log.exception("http.handler_failed", target=event.target.decode("latin-1"))
                    response = _Response(500, b"internal error\n")
                head = h11.Response(status_code=response.status, headers=response.headers)
                await _send(stream, conn, head)
                if event.method.upper() != b"HEAD":
                    await _send(stream, conn, h11.Data(data=response.body))
                await _send(stream, conn, h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE or health_only:
                    return
            elif event is h11.PAUSED:
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()  # keep-alive: the next request on this connection
                head_by = anyio.current_time() + head_timeout
            elif isinstance(event, h11.ConnectionClosed):
                return
            # else Data / EndOfMessage of a request body: ignored (GET and HEAD only)


def _health_only(request: h11.Request) -> _Response:
    path = request.target.decode("ascii", "replace").split("?", 1)[0]
    if path == "/healthz" and request.method.upper() in (b"GET", b"HEAD"):
        return _Response(200, b"ok\n")
    return _Response(503, b"too many connections\n")


async def _handle(
    stream: anyio.abc.ByteStream,
    status: Status,
    metrics: Metrics,
    slots: anyio.CapacityLimiter,
    overflow: anyio.CapacityLimiter,
) -> None:
    try:
        async with stream:
            limiter = slots
            try:
                slots.acquire_nowait()
            except anyio.WouldBlock:
                limiter = overflow
                try:
                    overflow.acquire_nowait()
                except anyio.WouldBlock:
                    return  # past every limit: closed unanswered
            try:
                health_only = limiter is overflow
                await _serve_connection(stream, status, metrics, health_only=health_only)
            except h11.RemoteProtocolError as exc:
                await _reject(stream, exc.error_status_hint, b"bad request\n")
            finally:
                limiter.release()
    except Exception as exc:  # a broken client never takes the service down
        log.debug("http.connection_error", error=f"{type(exc).__name__}: {exc}")


async def _reject(stream: anyio.abc.ByteStream, status: int, body: bytes) -> None:
    """Answer without h11 state (after a protocol error, or before reading anything)."""
    reason = {400: "Bad Request", 431: "Request Header Fields Too Large", 503: "Unavailable"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    try:
        with anyio.move_on_after(1.0):
            await stream.send(head + body)
    except Exception as exc:
        log.debug("http.reject_failed", error=f"{type(exc).__name__}: {exc}")


async def serve_http(
    status: Status,
    metrics: Metrics,
    host: str,
    port: int,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; `task_status.started(port)` with the port actually bound."""
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:  # the port is taken, the address is not ours: say which
        raise HttpServeError(
            f"cannot listen on {host}:{port} for /healthz, /readyz and /metrics "
            f"(DTS_WATCHER_HTTP__HOST / DTS_WATCHER_HTTP__PORT): {exc.strerror or exc}"
        ) from None
    slots = anyio.CapacityLimiter(MAX_CONNECTIONS)
    overflow = anyio.CapacityLimiter(MAX_OVERFLOW)
    async with listener:
        bound: int = listener.listeners[0].extra(SocketAttribute.local_port)  # noqa: S610
        log.info("http.listening", host=host, port=bound, paths=list(_PATHS))
        task_status.started(bound)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            await _handle(stream, status, metrics, slots, overflow)

        await listener.serve(handle)
