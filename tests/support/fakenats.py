"""Hostile NATS peers on loopback.

`FakeNats` speaks just enough of the NATS protocol to be believed: it sends an INFO line
of its choosing (by default one that does *not* say `tls_required`, as a server in the
middle stripping TLS would), answers PING with PONG, and records every byte a client
sends, so a test can tell whether a password or a token went out in the clear. It runs
in a thread of its own, so synchronous tests, async tests and CLI subprocesses can all
talk to it.

TLS files for a real nats-server: `tests.support.hostile.self_signed`.
"""

from __future__ import annotations

import json
import socket
import threading
from types import TracebackType
from typing import Any

from dts_sim.natsserver import free_port

PLAIN_INFO: dict[str, Any] = {
    "server_id": "FAKE",
    "server_name": "fake",
    "version": "2.10.0",
    "proto": 1,
    "go": "go1.22",
    "host": "127.0.0.1",
    "headers": True,
    "max_payload": 1048576,
    "auth_required": True,
    "jetstream": True,
}


class FakeNats:
    def __init__(self, info: dict[str, Any] | None = None) -> None:
        self.info = dict(PLAIN_INFO if info is None else info)
        self.port = free_port()
        self.received = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def seen(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def __enter__(self) -> FakeNats:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            try:
                conn.sendall(b"INFO " + json.dumps(self.info).encode() + b"\r\n")
            except OSError:
                return
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self.received.extend(data)
                if b"PING\r\n" in data:  # believed: the client goes on (and publishes)
                    try:
                        conn.sendall(b"PONG\r\n")
                    except OSError:
                        return
