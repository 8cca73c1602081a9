"""Pacing requests under DTS's rate limit (20 requests/s per account per region).

Requests are paced at `PACE` of the configured rate: DTS counts them as they arrive, and
the time from our start to their arrival varies (a garbage collection, a busy event loop,
the network) by tens of milliseconds. At exactly the limit, a late request followed by an
on-time one puts `rate_limit` + 1 into some second; 5% leaves 50 ms of room per second.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

PACE = 0.95


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart (a token bucket of size 1).

    Each start is timed from when the previous one really happened, not from when it was
    due: if the event loop was busy (a page of 30 new jobs takes milliseconds to parse)
    and a request goes out late, the next waits its full interval after it, rather than
    several due ones going out together and DTS seeing more than `rate` in a second.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # held while waiting: starts are granted one by one
            now = self._clock()
            start = max(now, self._next)
            if start > now:
                await self._sleep(start - now)
            self._next = max(start, self._clock()) + self._interval
