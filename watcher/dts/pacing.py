"""Pacing requests under DTS's rate limit (20 requests/s per account per region).

Requests are paced at `PACE` of the configured rate: DTS counts them as they arrive, and
the time from our send to their arrival varies (the network) by tens of milliseconds. At
exactly the limit, a late request followed by an on-time one puts `rate_limit` + 1 into
some second; 5% leaves 50 ms of room per second.

The spacing is between requests as they leave, not as they are granted: between a grant
and the moment the request is on the wire, the task yields to the event loop several
times (the connection pool, the socket), and on a busy loop (pages being judged) that
took up to a few hundred milliseconds; a late request and the next, on time, went out
close together, and DTS would have seen 23 in one second at a limit of 20. So a grant
holds the next one back until its request has been sent (`slot`), and the next is timed
from that moment.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

PACE = 0.95


class RateLimiter:
    """Spaces requests, as they are sent, at least 1/rate seconds apart (a token bucket
    of size 1).

    Each turn is timed from when the previous request really went out, not from when it
    was due or granted: if the event loop was busy and a request went out late, the next
    waits its full interval after it, rather than several going out together and DTS
    seeing more than `rate` in a second.
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
        """A start, counted as sent at once (see `slot`)."""
        async with self.slot():
            pass

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Callable[[], None]]:
        """Wait for this request's turn; yields `sent`, to be called once the request is
        on the wire (else it counts as sent when the block ends). The next turn comes at
        least one interval after that moment, and not before it."""
        await self._lock.acquire()  # released when this request is sent: one at a time
        try:
            now = self._clock()
            start = max(now, self._next)
            if start > now:
                await self._sleep(start - now)
        except BaseException:
            self._lock.release()
            raise
        done = False

        def sent() -> None:
            nonlocal done
            if not done:
                done = True
                self._next = max(start, self._clock()) + self._interval  # not before its turn
                self._lock.release()

        try:
            yield sent
        finally:
            sent()
