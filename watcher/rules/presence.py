"""Presence: a job seen for the first time is `discovered`; one missing from complete
listings of its region is `removed`, after `rules.removed_after` of them in a row.

Only complete listings count (`detect` calls `missing` for them alone): a region that
was not read completely proves nothing, and its jobs keep their state and memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from watcher.kinds import DISCOVERED, REMOVED
from watcher.rules.base import Rule, Say
from watcher.settings import RulesSettings
from watcher.snapshot import JobState


@dataclass(frozen=True, slots=True)
class PresenceMemory:
    absent: int = 0  # consecutive complete listings without the job

    def to_dict(self) -> dict[str, Any]:
        return {"absent": self.absent}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PresenceMemory:
        return cls(absent=int(data.get("absent", 0)))


class Presence(Rule[PresenceMemory]):
    name = "presence"
    memory = PresenceMemory
    live_blind = True  # judges stable fields only (see Rule.live_blind)

    def __init__(self, removed_after: int) -> None:
        self.removed_after = removed_after

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> Presence:
        return cls(settings.removed_after)

    def first_sight(self, job: JobState, mem: PresenceMemory, say: Say) -> PresenceMemory:
        say(DISCOVERED, {})
        return mem

    def quiet_first_sight(self, job: JobState, mem: PresenceMemory) -> PresenceMemory:
        raise AssertionError("discovered is always said")  # pragma: no cover

    def changed(
        self, old: JobState, job: JobState, mem: PresenceMemory, say: Say
    ) -> PresenceMemory:
        return self.blank  # seen again: the absence count starts over

    def wants_unchanged(self, mem: PresenceMemory) -> bool:
        return mem.absent > 0

    def unchanged(self, job: JobState, mem: PresenceMemory, say: Say) -> PresenceMemory:
        return self.blank

    def missing(self, old: JobState, mem: PresenceMemory, say: Say) -> PresenceMemory | None:
        """One more complete listing without the job: its memory, or None once removed."""
        absent = mem.absent + 1
        if absent >= self.removed_after:
            say(REMOVED, {})
            return None
        return PresenceMemory(absent)
