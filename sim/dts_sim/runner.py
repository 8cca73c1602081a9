"""`dts-watcher simulate`: a simulator in the foreground, until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from types import FrameType
from typing import Any

from dts_sim.auth import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from dts_sim.scenario import Scenario, load_scenario
from dts_sim.server import Simulator

__all__ = ["serve"]


def serve(
    scenario: str,
    host: str = "127.0.0.1",
    port: int = 0,
    auto_advance: float | None = None,
) -> int:
    """Run a simulator in the foreground until SIGINT/SIGTERM; returns the exit code 0.

    scenario: a built-in name or a file path. auto_advance: seconds between steps; None
    uses the scenario's `step_seconds`, 0 (or less) means steps only advance through
    `POST /_sim/advance`.
    """
    loaded = load_scenario(scenario)
    interval = loaded.step_seconds if auto_advance is None else auto_advance
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Outside the main thread this fails; Ctrl+C then arrives as KeyboardInterrupt.
        with contextlib.suppress(ValueError):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        with Simulator(
            loaded, host=host, port=port, auto_advance=interval if interval > 0 else None
        ) as sim:
            print(_banner(sim, loaded, interval), flush=True)
            try:
                while not done.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
        print("DTS simulator stopped.", flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _banner(sim: Simulator, loaded: Scenario, interval: float) -> str:
    """What is being served where, and how to point a watcher at it."""
    regions = json.dumps(sim.regions(), separators=(",", ":"))
    advancing = f"every {interval:g} s" if interval > 0 else f"on POST {sim.url}/_sim/advance"
    lines = [
        f"DTS simulator serving scenario {loaded.name!r} at {sim.url}",
        f"  {loaded.description}" if loaded.description else None,
        f"  regions: {', '.join(sim.regions()) or '(none)'}; {sim.total_steps} steps,"
        f" advancing {advancing}",
        f"  access key id: {DEFAULT_ACCESS_KEY_ID}",
        f"  access key secret: {DEFAULT_ACCESS_KEY_SECRET}",
        *(
            f"  account {name}: key {a['access_key_id']} / {a['access_key_secret']},"
            f" role {a['role_arn']}"
            for name, a in sim.accounts().items()
            if name != "default"
        ),
        f"  admin API: {sim.url}/_sim/state (see docs/simulator.md)",
        "",
        "Point a watcher at it with:",
        f"  export DTS_WATCHER_DTS__ENDPOINT={sim.url}",
        f"  export ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}",
        f"  export ALIBABA_CLOUD_ACCESS_KEY_SECRET={DEFAULT_ACCESS_KEY_SECRET}",
        f"  export DTS_WATCHER_DTS__REGIONS='{regions}'",
        "",
        "Press Ctrl+C to stop.",
    ]
    return "\n".join(line for line in lines if line is not None)
