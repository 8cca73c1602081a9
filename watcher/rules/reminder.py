"""Reminders: a job still not ok is not forgotten (`reminder`).

This rule tracks every condition the other rules see in a job (`Rule.conditions`: a
failure status, a delay level, a stall, an expiry; flapping is said by its own rule):
since when, and when it was last said (by its own event, or a reminder). Then:

- a *critical* condition still there `rules.repeat_interval` seconds after it was last
  said is reminded (`reason: repeat`), and again every interval;
- when the silence or maintenance window that covered a job ends (`say.silenced` was an
  id, and is now none) while it is still not ok, each condition it still has is reminded
  at once (`reason: silence_ended`): a consumer that skips silenced events (they carry
  the `silenced` attribute) learns, once the silence is over, of everything that is
  still wrong. A condition that came and went within the silence needs no reminder.

Reminders said during a silence are silenced themselves, like any event. The severity of
a reminder is its condition's. The silence state comes in as data with the judgement
(`Seen.silenced`), never from I/O; the times are `now`, when the job was observed. A job
with a condition is judged every cycle, changed or not (`wants_unchanged`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from watcher.events import format_time
from watcher.kinds import REMINDER
from watcher.rules.base import Condition, Reviewer, Say, Seen
from watcher.settings import RulesSettings

UNREMINDED = frozenset({"flapping"})  # condition kinds said by their own rule only


@dataclass(frozen=True, slots=True)
class Tracked:
    name: str  # the condition, e.g. "Failed", "critical", "stalled"
    since: datetime  # when it began
    said: datetime  # when it was last said (its event, or a reminder)


@dataclass(frozen=True, slots=True)
class ReminderMemory:
    tracked: tuple[Tracked, ...] = ()
    silenced: str | None = None  # what covered the job when last judged, while not ok

    def to_dict(self) -> dict[str, Any]:
        if not self.tracked:
            return {}
        return {
            "conditions": [[t.name, t.since.isoformat(), t.said.isoformat()] for t in self.tracked],
            "covered_by": self.silenced,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReminderMemory:
        tracked = tuple(
            Tracked(str(name), datetime.fromisoformat(since), datetime.fromisoformat(said))
            for name, since, said in data.get("conditions") or ()
        )
        covered = data.get("covered_by")
        return cls(tracked, str(covered) if tracked and covered else None)

    def since(self, name: str) -> datetime | None:
        return next((t.since for t in self.tracked if t.name == name), None)


class ReminderRule(Reviewer[ReminderMemory]):
    name = "reminder"
    memory = ReminderMemory

    def __init__(self, repeat_interval: float) -> None:
        self.repeat = repeat_interval  # seconds; 0 = off

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> ReminderRule:
        return cls(settings.repeat_interval)

    def wants_unchanged(self, mem: ReminderMemory) -> bool:
        return bool(mem.tracked)

    def due(self, mem: ReminderMemory, say: Say) -> bool:
        """A repeat may be due, or the silence covering the job changed."""
        if not mem.tracked:
            return False
        if say.silenced != mem.silenced:
            return True
        if self.repeat <= 0:
            return False
        last = min(t.said for t in mem.tracked)
        return (say.now - last).total_seconds() >= self.repeat

    def review(self, seen: Seen, mem: ReminderMemory) -> ReminderMemory:
        now, covered = seen.now, seen.silenced
        current = [c for c in seen.conditions() if c.kind not in UNREMINDED]
        if not current:
            return self.blank
        before = {t.name: t for t in mem.tracked}
        silence_ended = mem.silenced is not None and covered is None
        tracked = []
        for condition in current:
            known = before.get(condition.name)
            if known is None:  # new: its own event says it now
                tracked.append(Tracked(condition.name, condition.since or now, now))
                continue
            if silence_ended:
                self._remind(seen, condition, known, "silence_ended")
                known = replace(known, said=now)
            elif self._due(condition, known, now):
                self._remind(seen, condition, known, "repeat")
                known = replace(known, said=now)
            tracked.append(known)
        return ReminderMemory(tuple(tracked), covered)

    def _due(self, condition: Condition, known: Tracked, now: datetime) -> bool:
        if self.repeat <= 0 or condition.severity != "critical":
            return False
        return (now - known.said).total_seconds() >= self.repeat

    @staticmethod
    def _remind(seen: Seen, condition: Condition, known: Tracked, reason: str) -> None:
        duration = max(0.0, (seen.now - known.since).total_seconds())
        seen.say(
            REMINDER,
            {
                "condition": condition.name,
                "since": format_time(known.since),
                "duration_seconds": round(duration),
                "reason": reason,
            },
            condition.severity,
        )
