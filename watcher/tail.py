"""`dts-watcher tail`: print events as they are published, one line each (or raw JSON)."""

from __future__ import annotations

import signal
import sys

import anyio
import nats
from nats.aio.msg import Msg

from watcher.events import parse_envelope, summary
from watcher.publish import connect_options
from watcher.settings import Settings


async def tail(
    settings: Settings,
    subject: str | None = None,
    raw_json: bool = False,
    count: int | None = None,
    wait: float | None = None,
) -> int:
    options = connect_options(settings.nats)
    options["max_reconnect_attempts"] = 3

    async def quiet(exc: Exception) -> None:  # the failure is reported once, below
        pass

    try:
        nc = await nats.connect(error_cb=quiet, **options)
    except Exception as exc:
        print(
            f"dts-watcher: cannot connect to NATS at {settings.nats.display_url}: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    seen = 0
    done = anyio.Event()

    async def show(msg: Msg) -> None:
        nonlocal seen
        if done.is_set():
            return
        if raw_json:
            line = msg.data.decode("utf-8", errors="replace")
        else:
            try:
                line = summary(parse_envelope(msg.data))
            except ValueError:
                line = f"(not a CloudEvent on {msg.subject})"
        print(line, flush=True)
        seen += 1
        if count is not None and seen >= count:
            done.set()

    try:
        await nc.subscribe(subject or f"{settings.nats.subject_prefix}.>", cb=show)
        await nc.flush()
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        done.set()
                        return

            tg.start_soon(on_signal)
            with anyio.move_on_after(wait if wait is not None else float("inf")):
                await done.wait()
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    return 0
