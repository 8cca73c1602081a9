"""Flapping: a job whose status or delay level keeps changing (`flapping`, up and down).

Every `delay_threshold_crossed` the other rules say about a job, and every
`status_changed` into or out of an alarming status (a failure, Suspending: one whose
event is a warning or critical), is one change; not on first sight, and not the steps of
a job's lifecycle (Prechecking, Initializing, Synchronizing, Finished), which are
progress. When `rules.flap_threshold` changes fall within
`rules.flap_window` seconds, the job flaps: `flapping` up (warning) is said instead of
the change that made it, and from then on its `status_changed` and
`delay_threshold_crossed` are held back (counted, `dts_watcher_events_held_total`). Once
it has been steady (no change) for a quarter of the window, `flapping` down (info), then
one `status_changed` if its status differs from the one before it flapped, and one
`delay_threshold_crossed` if its delay level does: where it ended up, so a consumer's
picture is right again. So a job that flaps says at most `flap_threshold - 1` changes,
one `flapping` up and, once steady, one of each summary.

It is a `Reviewer`: it sees what the other rules said in the same judgement and holds it
back there; times are `now`, when the job was observed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from watcher.kinds import DELAY_THRESHOLD_CROSSED, FLAPPING, STATUS_CHANGED
from watcher.rules.base import Condition, Reviewer, Said, Say, Seen
from watcher.rules.delay import OK, DelayMemory, DelayRule
from watcher.settings import RulesSettings
from watcher.snapshot import FAILURE_STATUSES

CHANGES = (STATUS_CHANGED, DELAY_THRESHOLD_CROSSED)


@dataclass(frozen=True, slots=True)
class FlapMemory:
    changes: tuple[datetime, ...] = ()  # recent changes (within the window), not flapping
    since: datetime | None = None  # flapping since (None: not flapping)
    last: datetime | None = None  # the last change while flapping
    status: str | None = None  # the status before it flapped
    level: str = OK  # the delay level before it flapped
    count: int = 0  # changes since it started flapping, the ones that made it included

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.changes:
            out["flap_changes"] = [moment.isoformat() for moment in self.changes]
        if self.since is not None and self.last is not None:
            out["flap"] = {
                "since": self.since.isoformat(),
                "last": self.last.isoformat(),
                "status": self.status,
                "level": self.level,
                "count": self.count,
            }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlapMemory:
        changes = tuple(datetime.fromisoformat(str(t)) for t in data.get("flap_changes") or ())
        flap = data.get("flap")
        if not isinstance(flap, Mapping):
            return cls(changes=changes)
        return cls(
            changes=changes,
            since=datetime.fromisoformat(str(flap["since"])),
            last=datetime.fromisoformat(str(flap["last"])),
            status=flap.get("status"),
            level=str(flap.get("level") or OK),
            count=int(flap.get("count") or 0),
        )


class FlapRule(Reviewer[FlapMemory]):
    name = "flap"
    memory = FlapMemory

    def __init__(self, threshold: int, window: float) -> None:
        self.threshold = threshold  # 0 = off
        self.window = window
        self.steady = window / 4

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> FlapRule:
        return cls(settings.flap_threshold, settings.flap_window)

    def wants_unchanged(self, mem: FlapMemory) -> bool:
        return mem.since is not None or bool(mem.changes)  # steady yet? / forget old changes

    def due(self, mem: FlapMemory, say: Say) -> bool:
        """Steady long enough to end, or a change to forget."""
        if mem.last is not None:
            return (say.now - mem.last).total_seconds() >= self.steady
        return bool(mem.changes) and (say.now - mem.changes[0]).total_seconds() >= self.window

    def conditions(self, job: Any, mem: FlapMemory, now: datetime) -> Iterable[Condition]:
        if mem.since is None:
            return ()
        return (Condition("flapping", "flapping", "warning", mem.since),)

    def review(self, seen: Seen, mem: FlapMemory) -> FlapMemory:
        if self.threshold <= 0:
            return self.blank
        now = seen.now
        said = [item for item in seen.said if item.kind in CHANGES] if seen.old else []
        if mem.since is not None and mem.last is not None:
            return self._flapping(seen, mem, said, now)
        changes = [item for item in said if _alarming(item, seen.job.status)]
        if not changes and not mem.changes:
            return mem  # nothing to count (the usual case)
        recent = tuple(t for t in mem.changes if 0 <= (now - t).total_seconds() < self.window)
        recent += (now,) * len(changes)
        if len(recent) < self.threshold:
            return FlapMemory(changes=recent)
        # It flaps from here: what consumers last heard is what it was before this.
        status = next(
            (i.data["previous_status"] for i in said if i.kind is STATUS_CHANGED),
            seen.job.status,
        )
        level = next(
            (i.data["previous_level"] for i in said if i.kind is DELAY_THRESHOLD_CROSSED),
            self._level(seen),
        )
        for item in said:
            seen.hold(item)
        seen.say(FLAPPING, self._data("up", len(recent)))
        return FlapMemory(since=now, last=now, status=status, level=level, count=len(recent))

    def _flapping(
        self, seen: Seen, mem: FlapMemory, changes: list[Said], now: datetime
    ) -> FlapMemory:
        if changes:
            for item in changes:
                seen.hold(item)
            return replace(mem, last=now, count=mem.count + len(changes))
        assert mem.last is not None
        if (now - mem.last).total_seconds() < self.steady:
            return mem
        seen.say(FLAPPING, self._data("down", mem.count))
        job = seen.job
        if job.status != mem.status:
            data: dict[str, Any] = {
                "previous_status": mem.status,
                "error_message": job.error_message,
            }
            if mem.status in FAILURE_STATUSES and job.status not in FAILURE_STATUSES:
                data["recovered_from"] = mem.status
            seen.say(STATUS_CHANGED, data)
        level = self._level(seen)
        delay = seen.rule("delay")
        if level != mem.level and isinstance(delay, DelayRule):
            seen.say(
                DELAY_THRESHOLD_CROSSED, *delay.crossing(mem.level, level, job.delay_seconds or 0)
            )
        return self.blank

    @staticmethod
    def _level(seen: Seen) -> str:
        part = seen.part("delay")
        return part.level if isinstance(part, DelayMemory) else OK

    def _data(self, change: str, changes: int) -> dict[str, Any]:
        window = int(self.window) if float(self.window).is_integer() else self.window
        return {"change": change, "changes": max(1, changes), "window_seconds": window}


def _alarming(item: Said, status: str) -> bool:
    """Whether a change counts toward flapping: any delay level change, and a status
    change into or out of an alarming status (one whose `status_changed` is a warning or
    critical). Steps of a job's lifecycle (NotStarted, Prechecking, Initializing,
    Synchronizing, Finished) are progress, not flapping."""
    if item.kind is DELAY_THRESHOLD_CROSSED:
        return True
    return _alarm(item.data.get("previous_status")) or _alarm(status)


@functools.lru_cache(maxsize=256)
def _alarm(status: str | None) -> bool:
    return status is not None and STATUS_CHANGED.severity({"status": status}) != "info"
