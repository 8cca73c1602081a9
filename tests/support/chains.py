"""Detection over a run of listings, as the service chains it: each cycle judged against
the last one's baseline and memory, one poll interval later."""

from __future__ import annotations

from datetime import datetime, timedelta

from watcher.detect import Detection, detect
from watcher.rules import Memory, Rules
from watcher.snapshot import Snapshot


def chain(steps: list[Snapshot], rules: Rules, start: datetime, poll: timedelta) -> list[Detection]:
    """Each step's detection, the first from nothing, at `start + index * poll`."""
    previous: Snapshot | None = None
    memory = Memory()
    out = []
    for index, current in enumerate(steps):
        detection = detect(previous, current, memory, rules, start + index * poll)
        out.append(detection)
        previous, memory = detection.baseline, detection.memory
    return out
