"""Helpers for the tests of more than one replica: retry a NATS operation while a
cluster fails over, and wait for the cluster's state without sleeping blindly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def eventually(operation: Callable[[], Awaitable[T]], deadline: float = 30.0) -> T:
    """Run `operation` until it succeeds (NATS refuses while a leader is elected)."""
    last: BaseException | None = None
    try:
        with anyio.fail_after(deadline):
            while True:
                try:
                    return await operation()
                except Exception as exc:  # any failure while the cluster recovers: retry
                    last = exc
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not done within {deadline:g} s; last: {last!r}") from last


async def wait_for(condition: Callable[[], T | None], deadline: float = 30.0) -> T:
    """Poll `condition` (run in a thread: it may call monitoring endpoints) until it
    returns something other than None or False."""
    with anyio.fail_after(deadline):
        while True:
            found = await anyio.to_thread.run_sync(condition)
            if found is not None and found is not False:
                return found
            await anyio.sleep(0.05)


class Ticks:
    """A monotonic clock the test moves by hand (for fences and grace periods); with
    `step`, every reading also moves it on (time passes while a request is in flight)."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A ShardHandler that writes down what it is told, in order, and on
    `shard_releasing` checks the lease is still this member's (told before deletion)."""

    def __init__(self, name: str, leases: object = None) -> None:
        self.name = name
        self.leases = leases
        self.told: list[tuple[str, str]] = []
        self.held_while_releasing: list[bool] = []

    async def shard_acquired(self, shard: str) -> None:
        self.told.append(("acquired", shard))

    async def shard_releasing(self, shard: str) -> None:
        holds = getattr(self.leases, "holds", None)
        self.held_while_releasing.append(bool(holds and holds(shard)))
        self.told.append(("releasing", shard))

    async def shard_lost(self, shard: str) -> None:
        self.told.append(("lost", shard))
