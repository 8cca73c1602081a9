"""Shared fixtures: the real nats-server, the DTS simulator, settings pointing at both.

Tests run on anyio's asyncio backend (nats-py is asyncio-only).

No test may depend on the date or time it runs at: tests inject a clock, or derive their
fixtures from now. `pytest --clock-shift=365` checks it: it runs every test module that
handles absolute time with this process's wall clock moved a year ahead (`dev.py test`
runs it after the suite). Tests whose other half reads the real clock in another process
(a CLI subprocess signing requests, OpenSSL checking a certificate made here) cannot be
moved alone: they carry `@pytest.mark.wall_clock`, and the e2e folder is left out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
import time_machine

from dts_sim import Simulator
from dts_sim.natsserver import NatsCluster, NatsServer
from watcher.store import Store


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-shift",
        type=float,
        default=None,
        metavar="DAYS",
        help="run every test with this process's wall clock moved DAYS ahead (time-machine; "
        "monotonic time is untouched): a test that passes only on some dates fails here",
    )


# What marks a test module as reading or building absolute times: these are the tests the
# `--clock-shift` run repeats with the clock moved (a new one is included without anyone
# remembering to mark it).
_ABSOLUTE_TIME = re.compile(
    r"datetime\(20\d\d|datetime\.now|\btime\.time\(|date\.today|utcnow|parse_since"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--clock-shift"):
        return
    chosen, dropped = [], []
    for item in items:
        path = Path(str(item.fspath))
        shared = item.get_closest_marker("wall_clock") is not None or "e2e" in path.parts
        if not shared and _ABSOLUTE_TIME.search(_source(path)):
            chosen.append(item)
        else:
            dropped.append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = chosen


@functools.cache
def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _shifted_clock(request: pytest.FixtureRequest) -> Iterator[None]:
    days = request.config.getoption("--clock-shift")
    if not days:
        yield
        return
    with time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True):
        yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    store = tmp_path / "nats"
    store.mkdir()
    server = NatsServer(store_dir=store)
    with server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server nodes routed on loopback, JetStream on each, ready (a meta
    leader elected). Clients connect with `servers=nats_cluster.url_list`."""
    with NatsCluster(3, tmp_path / "nats-cluster") as cluster:
        yield cluster


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(None) as sim:
        yield sim


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh state file (closed after the test)."""
    with Store.open(tmp_path / "state.sqlite3") as opened:
        yield opened


@pytest.fixture
async def nats_client(nats_server: NatsServer) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()
