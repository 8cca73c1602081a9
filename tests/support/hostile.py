"""A hostile HTTP server on 127.0.0.1: it answers whatever a test scripts, byte for byte.

The DTS simulator and the credential fakes speak correct HTTP; an attacker (or a broken
proxy) does not. `HostileServer` reads each request (head and body) and sends an `Answer`
the test chose: any status line, headers that lie (a gzip that is not, a length that is
wrong), a body streamed from a generator (hundreds of megabytes without holding them), a
body dripped a byte at a time, or raw bytes and a hang-up. One thread per connection;
leaving the `with` block stops every one of them, drips included.

`Dts` scripts DescribeSynchronizationJobs pages for it; `self_signed` makes a TLS
certificate for 127.0.0.1 that nobody trusts until told to.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace")))


@dataclass
class Answer:
    """What to send back. `body` may be bytes or an iterable of chunks (sent as they
    come); `length` overrides Content-Length (None: the body's length when it is bytes,
    else none at all and the connection's end marks the body's); `drip` sends the body
    one byte every `drip` seconds; `raw` replaces everything with exactly these bytes."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    length: int | None = None
    drip: float | None = None
    raw: bytes | None = None
    reason: str = "OK"


def json_answer(document: Any, status: int = 200, **headers: str) -> Answer:
    return Answer(
        status,
        [("Content-Type", "application/json"), *headers.items()],
        json.dumps(document).encode(),
    )


App = Callable[[Request], Answer]


class HostileServer:
    def __init__(self, app: App, *, tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.seen: list[Request] = []
        self._tls = tls
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> HostileServer:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._accepting.join()
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in self._threads:
            thread.join(timeout=10)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._connections.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._connections.append(conn)
            request = _read_request(conn)
            if request is None:
                return
            with self._lock:
                self.seen.append(request)
            self._send(conn, self.app(request))
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _send(self, conn: socket.socket, answer: Answer) -> None:
        if answer.raw is not None:
            conn.sendall(answer.raw)
            return
        head = [f"HTTP/1.1 {answer.status} {answer.reason}"]
        head += [f"{name}: {value}" for name, value in answer.headers]
        length = answer.length
        if length is None and isinstance(answer.body, bytes):
            length = len(answer.body)
        if length is not None:
            head.append(f"Content-Length: {length}")
        head.append("Connection: close")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        chunks = [answer.body] if isinstance(answer.body, bytes) else answer.body
        for chunk in chunks:
            if self._stop.is_set():
                return
            if answer.drip is None:
                conn.sendall(chunk)
                continue
            for index in range(len(chunk)):
                if self._stop.wait(answer.drip):
                    return
                conn.sendall(chunk[index : index + 1])


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            return None
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    split = urlsplit(target)
    return Request(method, split.path, dict(parse_qsl(split.query)), headers, rest[:length])


# -- DTS pages ------------------------------------------------------------------------


def job_record(job_id: Any, status: str = "Synchronizing", **extra: Any) -> dict[str, Any]:
    return {"SynchronizationJobId": job_id, "Status": status, "Delay": "1", **extra}


def page(records: list[Any], total: int | None = None, number: int = 1) -> dict[str, Any]:
    return {
        "RequestId": f"req-{number}",
        "PageNumber": number,
        "PageRecordCount": len(records),
        "TotalRecordCount": len(records) if total is None else total,
        "SynchronizationInstances": records,
    }


class Dts:
    """Serves `listings[region]` page by page (`records` per region), unless `special`
    has an answer for that region (a function of the request)."""

    def __init__(self, listings: dict[str, list[Any]] | None = None) -> None:
        self.listings: dict[str, list[Any]] = listings or {}
        self.special: dict[str, App] = {}

    def __call__(self, request: Request) -> Answer:
        region = request.query.get("RegionId", "")
        if region in self.special:
            return self.special[region](request)
        size, number = int(request.query.get("PageSize", 30)), int(request.query["PageNum"])
        records = self.listings.get(region, [])
        chunk = records[(number - 1) * size : number * size]
        return json_answer(page(chunk, len(records), number))


def gzip_bomb(decoded_size: int) -> bytes:
    """A gzip body that expands to `decoded_size` zero bytes (made a megabyte at a time)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(decoded_size >> 20)]
    parts.append(packer.flush())
    return b"".join(parts)


def gzipped(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode())


def stream_of(size: int, fill: bytes = b" ") -> Iterator[bytes]:
    """`size` bytes of `fill`, a megabyte at a time (never all in memory)."""
    block = fill * (1 << 20)
    left = size
    while left > 0:
        yield block[: min(left, len(block))]
        left -= len(block)


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# -- TLS ---------------------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (valid from an hour ago for a day) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# -- logs --------------------------------------------------------------------------------


class CapturedLogs:
    def __init__(self) -> None:
        import io

        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                out.append(record)
        return out


class capture_logs:  # a class, used as `with capture_logs() as logs:`
    """Every log line (JSON, debug and up) written inside the block."""

    def __enter__(self) -> CapturedLogs:
        from watcher.logs import configure

        self.logs = CapturedLogs()
        configure("debug", "json", stream=self.logs.stream)
        return self.logs

    def __exit__(self, *exc: object) -> None:
        import logging

        logging.getLogger().handlers.clear()
