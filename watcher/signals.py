"""SIGTERM and SIGINT, the one way: set a stop event when one arrives.

The service, `tail` and the demo all stop the same way: the signal sets an `anyio.Event`
and the code that owns the work finishes it in order (the cycle in flight, the outbox
flush, `stopped`), instead of being torn down wherever the signal found it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def stop_on_signal(stop: anyio.Event, on_signal: Callable[[str], None] | None = None) -> None:
    """Until cancelled: set `stop` at SIGTERM or SIGINT (`on_signal(name)` for each).

    Signals keep being received until this task is cancelled: a second Ctrl-C during
    the shutdown does not cut it short with a KeyboardInterrupt (the shutdown is
    bounded: a cycle in flight, an outbox flush).
    """
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            if on_signal is not None:
                on_signal(signal.Signals(signum).name)
            stop.set()
