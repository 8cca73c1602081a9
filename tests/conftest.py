"""Shared fixtures: the real nats-server, the DTS simulator, settings pointing at both.

Tests run on anyio's asyncio backend (nats-py is asyncio-only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from watcher.natsserver import NatsServer
from watcher.simulator import Simulator


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
def simulator() -> Iterator[Simulator]:
    with Simulator(None) as sim:
        yield sim


@pytest.fixture
async def nats_client(nats_server: NatsServer) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()
