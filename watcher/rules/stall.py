"""Stalled: a job that should be moving and is not (`stalled`, up and down).

A job that is Synchronizing (or Migrating) replicates as it goes: its delay stays put or
shrinks. When it has stopped applying changes, the delay grows with the wall clock. So
the rule times *runs*: from an observation (when, what delay, what checkpoint), a run
goes on while the delay has grown by at least `PACE` (0.9) seconds per second since its
start, averaged over the run (a poll that catches DTS before it refreshed the delay does
not break it). Where DTS reports a checkpoint, the run goes on while the checkpoint stands
still and the delay grew. A run that lasts `rules.stall_after` seconds is a stall: one
`stalled` up (critical). The first observation that breaks the run (the delay fell or
kept pace, the checkpoint moved, the job left Synchronizing) says `stalled` down (info).

Observation times are `say.now` (the cycle's time): the rule reads no clock. A run
starts at an observation whose delay is higher than the last one's (so a job whose delay
stands still keeps no memory, and the steady state costs nothing); it is timed on
unchanged jobs too (`wants_unchanged`), which is how it notices a delay that stopped
growing. A clock that went back starts a new run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from watcher.kinds import STALLED
from watcher.rules.base import Condition, Rule, Say
from watcher.settings import RulesSettings
from watcher.snapshot import SYNCHRONIZING, JobState

PACE = 0.9  # seconds of delay per second of wall-clock time that means "not moving"
MOVING = frozenset({SYNCHRONIZING, "Migrating"})  # statuses in which a job should move


@dataclass(frozen=True, slots=True)
class StallMemory:
    since: datetime | None = None  # when the run being timed started (an observation)
    delay: int = 0  # the delay then
    checkpoint: str | None = None  # the checkpoint then, where DTS reports one
    stalled: bool = False  # `stalled` up was said for this run

    def to_dict(self) -> dict[str, Any]:
        if self.since is None:
            return {}
        return {
            "stall_since": self.since.isoformat(),
            "stall_delay": self.delay,
            "stall_checkpoint": self.checkpoint,
            "stalled": self.stalled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StallMemory:
        since = data.get("stall_since")
        if not since:
            return cls()
        return cls(
            since=datetime.fromisoformat(str(since)),
            delay=int(data.get("stall_delay") or 0),
            checkpoint=data.get("stall_checkpoint"),
            stalled=bool(data.get("stalled")),
        )


class StallRule(Rule[StallMemory]):
    name = "stall"
    memory = StallMemory

    def __init__(self, after: float) -> None:
        self.after = after  # seconds; 0 = off

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> StallRule:
        return cls(settings.stall_after)

    def changed(self, old: JobState, job: JobState, mem: StallMemory, say: Say) -> StallMemory:
        return self._judge(job, mem, say, old)

    def wants_unchanged(self, mem: StallMemory) -> bool:
        return mem.since is not None

    def unchanged(self, job: JobState, mem: StallMemory, say: Say) -> StallMemory:
        return self._judge(job, mem, say, None)

    def conditions(self, job: JobState, mem: StallMemory, now: datetime) -> Iterable[Condition]:
        if not mem.stalled:
            return ()
        return (Condition("stalled", "stalled", "critical", mem.since),)

    def _judge(
        self, job: JobState, mem: StallMemory, say: Say, old: JobState | None
    ) -> StallMemory:
        """`old`: the job's previous state when it changed, None when it did not."""
        now = say.now
        if self.after <= 0 or job.status not in MOVING or job.delay_seconds is None:
            self._moving(job, mem, say)
            return self.blank
        if mem.since is None or (now < mem.since and not mem.stalled):
            return self._start(job, now, old)  # nothing timed yet, or the clock went back
        if not self._still(job, mem, now):
            self._moving(job, mem, say)
            return self._start(job, now, old)
        elapsed = max(0.0, (now - mem.since).total_seconds())
        if not mem.stalled and elapsed >= self.after:
            self._say(say, job, "up", elapsed)
            return replace(mem, stalled=True)
        return mem

    @staticmethod
    def _still(job: JobState, mem: StallMemory, now: datetime) -> bool:
        """Whether the run goes on: the job has not moved since `mem.since`."""
        assert mem.since is not None and job.delay_seconds is not None
        grown = job.delay_seconds - mem.delay
        if job.checkpoint is not None and mem.checkpoint is not None:
            return job.checkpoint == mem.checkpoint and grown > 0
        elapsed = (now - mem.since).total_seconds()
        return grown > 0 and grown >= PACE * elapsed

    @staticmethod
    def _start(job: JobState, now: datetime, old: JobState | None) -> StallMemory:
        """A run starts where the delay is seen growing (this observation, against the
        last one); anything else is not timed, so a steady job keeps no memory."""
        assert job.delay_seconds is not None
        if old is None or old.delay_seconds is None or job.delay_seconds <= old.delay_seconds:
            return StallMemory()
        return StallMemory(since=now, delay=job.delay_seconds, checkpoint=job.checkpoint)

    def _moving(self, job: JobState, mem: StallMemory, say: Say) -> None:
        if mem.stalled and mem.since is not None:
            self._say(say, job, "down", max(0.0, (say.now - mem.since).total_seconds()))

    @staticmethod
    def _say(say: Say, job: JobState, change: str, seconds: float) -> None:
        say(
            STALLED,
            {
                "change": change,
                "stalled_seconds": round(seconds),
                "delay_seconds": job.delay_seconds,
                "checkpoint": job.checkpoint,
            },
        )
