"""Shared fixtures. Tests run on anyio's asyncio backend (nats-py is asyncio-only)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
