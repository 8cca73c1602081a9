"""Pacing counts from the moment a request is on the wire, and only until then: the next
request of a shard waits for the previous one to be sent, never for its answer.

A real HTTP server on 127.0.0.1 holds the answer to page 2 until page 3 has arrived (or
a guard runs out). If the client's pacing waited for whole exchanges, page 3 would only
leave once page 2 was answered, and the server would see them in the other order.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from tests.support.hostile import Answer, Dts, HostileServer, Request, job_record
from watcher.dts.client import DtsClient
from watcher.dts.credentials import Credentials, StaticProvider
from watcher.settings import DtsSettings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

GUARD = 10.0  # seconds the server holds page 2 at most; never what is asserted


class HoldingDts:
    """The listing of 90 jobs (3 pages of 30); page 2 answered once page 3 arrived."""

    def __init__(self) -> None:
        self.dts = Dts({"cn-hangzhou": [job_record(f"j{n:02}") for n in range(90)]})
        self.steps: list[str] = []
        self.third = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Answer:
        number = request.query["PageNum"]
        with self.lock:
            self.steps.append(f"arrived {number}")
        if number == "3":
            self.third.set()
        if number == "2":
            self.third.wait(GUARD)
        answer = self.dts(request)
        with self.lock:
            self.steps.append(f"answered {number}")
        return answer


async def test_the_next_request_leaves_while_the_previous_answer_is_awaited() -> None:
    app = HoldingDts()
    settings: dict[str, Any] = {
        "regions": ["cn-hangzhou"],
        "rate_limit": 20,
        "max_concurrent_pages": 4,
        "timeout": 3 * GUARD,
    }
    provider = StaticProvider(Credentials("pacing-key", SecretStr("pacing-secret"), None))
    with HostileServer(app) as server:
        client = DtsClient(DtsSettings(**settings, endpoint=server.url), provider)
        with anyio.fail_after(4 * GUARD):
            async with client:
                snapshot = await client.fetch()
    assert snapshot.complete and len(snapshot) == 90
    steps = app.steps
    assert steps.index("arrived 3") < steps.index("answered 2"), steps
