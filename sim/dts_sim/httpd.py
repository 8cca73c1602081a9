"""The HTTP plumbing under the simulator: the standard library's ThreadingHTTPServer.

Why that server: it needs no event loop, so the same simulator works from synchronous
tests, from anyio/asyncio tests, from the demo and from `dts-watcher simulate`, and it
costs no dependency. It only moves bytes: each request is handed, read whole, to a
`handle` function (the simulator's), whose `Response` is sent back.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from dts_sim.api import Response, new_request_id
from dts_sim.render import json_bytes

__all__ = ["Handle", "HttpServer"]

log = logging.getLogger("dts_sim")

# handle(method, target, headers with lower-case names, body, client address) -> Response
Handle = Callable[[str, str, dict[str, str], bytes, str], Response]


class HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers open connections, so stop() can close them.

    Handler threads are daemon threads (a forgotten simulator never blocks interpreter
    exit), and `block_on_close` keeps them tracked so `server_close()` joins them.
    """

    block_on_close = True

    def __init__(self, address: tuple[str, int], handle: Handle) -> None:
        self.answer = handle
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall for seconds
        # where reverse DNS is slow; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are normal (timeouts, stop()); no tracebacks.
        log.debug("simulator connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as DTS's gateway does
    server_version = "dts-simulator"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK would add ~40 ms to every response.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        answer = cast(HttpServer, self.server).answer
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or self.headers.get("Transfer-Encoding"):
            self.send_error(411, "a Content-Length is required")
            return
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            response = answer(self.command, self.path, headers, body, self.client_address[0])
        except Exception:  # a bug in the simulator: say so like DTS would, keep serving
            log.exception("simulator failed to answer %s %s", self.command, self.path)
            response = Response(
                500,
                json_bytes(
                    {
                        "Code": "InternalError",
                        "Message": "simulator error",
                        "RequestId": new_request_id(),
                    }
                ),
            )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator %s " + format, self.address_string(), *args)
