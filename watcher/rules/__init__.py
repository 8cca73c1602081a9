"""The rules, one module each, and `Rules`: the set configured from settings.

`Rules(settings.rules)` is the one place rules are built from settings (`Rules.of(...)`
takes the settings' fields as keywords, for tests). `judge` applies every rule to a job
that a listing showed, `missing` the presence rule to a job a complete listing did not;
`watcher.detect` calls them for every job of a cycle and stays the only caller.

The order below is the order in which a job's events come out: discovered, its status,
its precheck, its initialization, its delay level. See docs/architecture.md for adding a
rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcher.rules.base import JobMemory, Memory, Rule, Say
from watcher.rules.delay import DelayRule
from watcher.rules.init import InitRule
from watcher.rules.precheck import PrecheckRule
from watcher.rules.presence import Presence
from watcher.rules.status import StatusRule
from watcher.settings import RulesSettings
from watcher.snapshot import JobState

__all__ = ["JobMemory", "Memory", "Rule", "Rules", "Say", "decode_memory"]

# Every rule after presence, in the order they judge a job.
JUDGES: tuple[type[Rule[Any]], ...] = (StatusRule, PrecheckRule, InitRule, DelayRule)
_ALL: tuple[type[Rule[Any]], ...] = (Presence, *JUDGES)


class Rules:
    """The configured rules (frozen once built)."""

    def __init__(self, settings: RulesSettings | None = None) -> None:
        s = settings if settings is not None else RulesSettings()
        self.settings = s
        self.announce_existing = s.announce_existing
        self.presence = Presence.from_settings(s)
        self.judges: tuple[Rule[Any], ...] = tuple(kind.from_settings(s) for kind in JUDGES)
        self._all = (self.presence, *self.judges)

    @classmethod
    def of(cls, **settings: Any) -> Rules:
        """Rules from the fields of `RulesSettings` (validated, defaults filled in)."""
        return cls(RulesSettings(**settings))

    def rule(self, name: str) -> Rule[Any]:
        return next(rule for rule in self._all if rule.name == name)

    def judge(self, old: JobState | None, job: JobState, mem: JobMemory, say: Say) -> JobMemory:
        """Every rule on a job a listing showed (`old`: its last known state, if any)."""
        if old is None:
            return self._first_sight(job, say)
        if old is job or old == job:
            return self._unchanged(job, mem, say)
        parts = dict(mem.parts)
        for rule in self._all:
            self._keep(parts, rule, rule.changed(old, job, mem.of(rule), say))
        return JobMemory(parts)

    def missing(self, old: JobState, mem: JobMemory, say: Say) -> JobMemory | None:
        """A complete listing did not show the job: its memory, or None once removed."""
        presence = self.presence.missing(old, mem.of(self.presence), say)
        if presence is None:
            return None
        parts = dict(mem.parts)
        self._keep(parts, self.presence, presence)
        return JobMemory(parts)

    def _first_sight(self, job: JobState, say: Say) -> JobMemory:
        parts: dict[str, Any] = {}
        self._keep(parts, self.presence, self.presence.first_sight(job, self.presence.blank, say))
        for rule in self.judges:
            if self.announce_existing:
                found = rule.first_sight(job, rule.blank, say)
            else:  # stay quiet, but remember what is already true
                found = rule.quiet_first_sight(job, rule.blank)
            self._keep(parts, rule, found)
        return JobMemory(parts)

    def _unchanged(self, job: JobState, mem: JobMemory, say: Say) -> JobMemory:
        if not mem.parts:
            return mem  # unchanged, nothing pending: the steady state costs nothing
        parts = dict(mem.parts)
        for rule in self._all:
            part = mem.of(rule)
            if rule.wants_unchanged(part):
                self._keep(parts, rule, rule.unchanged(job, part, say))
        return mem if parts == mem.parts else JobMemory(parts)

    @staticmethod
    def _keep(parts: dict[str, Any], rule: Rule[Any], part: Any) -> None:
        if part == rule.blank:
            parts.pop(rule.name, None)
        else:
            parts[rule.name] = part


def decode_memory(data: Mapping[str, Any]) -> JobMemory:
    """A job's memory from its persisted form (`JobMemory.to_dict`)."""
    parts: dict[str, Any] = {}
    for rule in _ALL:
        part = rule.memory.from_dict(data)
        if part != rule.memory():
            parts[rule.name] = part
    return JobMemory(parts)
