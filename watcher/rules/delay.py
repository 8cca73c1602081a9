"""Delay: named levels with thresholds (`rules.delay_thresholds`); each change of level,
up or back down to "ok", is one `delay_threshold_crossed`.

A level is entered when the delay reaches its threshold for `rules.delay_for_cycles`
consecutive observations, and left only when the delay falls below threshold x
(1 - `rules.delay_hysteresis`). The delay is judged only while the job is Synchronizing
or Migrating (a migration job's incremental phase; `snapshot.DELAY_STATUSES`): a frozen
delay neither raises nor clears a level, and counting starts afresh when it resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.kinds import DELAY_THRESHOLD_CROSSED, Severity
from watcher.rules.base import Condition, Rule, Say
from watcher.settings import RulesSettings
from watcher.snapshot import DELAY_STATUSES, JobState

OK = "ok"


@dataclass(frozen=True, slots=True)
class DelayMemory:
    level: str = OK
    # Consecutive synchronizing observations with the delay at or above each level's
    # threshold, for levels not (yet) entered.
    streaks: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"delay_level": self.level, "delay_streaks": dict(self.streaks)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DelayMemory:
        return cls(
            level=str(data.get("delay_level", OK)),
            streaks=tuple(sorted((data.get("delay_streaks") or {}).items())),
        )


class DelayRule(Rule[DelayMemory]):
    name = "delay"
    memory = DelayMemory

    def __init__(
        self,
        thresholds: Mapping[str, float],
        hysteresis: float,
        for_cycles: int,
    ) -> None:
        # (level, threshold), ascending; whole seconds stay integers in event data.
        self.levels = tuple(
            (name, int(seconds) if float(seconds).is_integer() else float(seconds))
            for name, seconds in sorted(thresholds.items(), key=lambda item: item[1])
        )
        self.names = [name for name, _ in self.levels]
        self.hysteresis = hysteresis
        self.for_cycles = for_cycles

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> DelayRule:
        return cls(settings.delay_thresholds, settings.delay_hysteresis, settings.delay_for_cycles)

    def severity_of(self, level: str) -> Severity:
        """ok is info; warning and critical are themselves; of other names, the highest
        level is critical and the rest are warnings."""
        if level == OK:
            return "info"
        if level in ("warning", "critical"):
            return level  # type: ignore[return-value]
        return "critical" if self.names and level == self.names[-1] else "warning"

    def level_for(self, delay: int | None) -> str:
        """The highest level whose threshold the delay reaches (no streaks, no hysteresis)."""
        level = OK
        for name, threshold in self.levels:
            if delay is not None and delay >= threshold:
                level = name
        return level

    def first_sight(self, job: JobState, mem: DelayMemory, say: Say) -> DelayMemory:
        return self.changed(job, job, mem, say)

    def quiet_first_sight(self, job: JobState, mem: DelayMemory) -> DelayMemory:
        if job.status in DELAY_STATUSES and job.delay_seconds is not None:
            return DelayMemory(level=self.level_for(job.delay_seconds))
        return mem

    def wants_unchanged(self, mem: DelayMemory) -> bool:
        return bool(mem.streaks)  # a count toward a level is in progress

    def unchanged(self, job: JobState, mem: DelayMemory, say: Say) -> DelayMemory:
        return self.changed(job, job, mem, say)

    def changed(self, old: JobState, job: JobState, mem: DelayMemory, say: Say) -> DelayMemory:
        if job.status not in DELAY_STATUSES or job.delay_seconds is None:
            # Not moving data: the delay is frozen or meaningless; keep the level.
            return DelayMemory(level=mem.level) if mem.streaks else mem
        delay = job.delay_seconds
        if mem.level == OK and not mem.streaks and (not self.levels or delay < self.levels[0][1]):
            return mem  # below every threshold, nothing counted: the usual case
        index = self.names.index(mem.level) if mem.level in self.names else -1
        new_index = self._after_hysteresis(index, delay)
        counted = {
            name: dict(mem.streaks).get(name, 0) + 1
            for name, threshold in self.levels[new_index + 1 :]
            if delay >= threshold
        }
        for j in range(len(self.levels) - 1, new_index, -1):
            if counted.get(self.names[j], 0) >= self.for_cycles:
                new_index = j
                break
        streaks = tuple(
            sorted((n, c) for n, c in counted.items() if self.names.index(n) > new_index)
        )
        level = self.names[new_index] if new_index >= 0 else OK
        if new_index != index:
            self._say_crossed(say, index, new_index, delay)
        return DelayMemory(level=level, streaks=streaks)

    def _after_hysteresis(self, index: int, delay: int) -> int:
        """The level kept once the delay fell: lower only below threshold x (1 - h)."""
        keep = 1.0 - self.hysteresis
        if index < 0 or delay >= self.levels[index][1] * keep:
            return index
        for j in range(index - 1, -1, -1):
            if delay >= self.levels[j][1] * keep:
                return j
        return -1

    def _say_crossed(self, say: Say, index: int, new_index: int, delay: int) -> None:
        say(DELAY_THRESHOLD_CROSSED, *self._crossed(index, new_index, delay))

    def crossing(self, previous: str, level: str, delay: int) -> tuple[dict[str, Any], Severity]:
        """The data and severity of `delay_threshold_crossed` from one level to another
        (the flapping rule's summary says where a job ended up)."""
        index = self.names.index(previous) if previous in self.names else -1
        return self._crossed(index, self.names.index(level) if level in self.names else -1, delay)

    def _crossed(self, index: int, new_index: int, delay: int) -> tuple[dict[str, Any], Severity]:
        rising = new_index > index
        level = self.names[new_index] if new_index >= 0 else OK
        data = {
            "level": level,
            "previous_level": self.names[index] if index >= 0 else OK,
            "delay_seconds": delay,
            # going down: the threshold of the level left
            "threshold_seconds": self.levels[new_index if rising else index][1],
            "change": "up" if rising else "down",
        }
        return data, self.severity_of(level)

    def conditions(self, job: JobState, mem: DelayMemory, now: datetime) -> Iterable[Condition]:
        if mem.level == OK:
            return ()
        return (Condition("delay", mem.level, self.severity_of(mem.level)),)
