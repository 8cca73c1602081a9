"""The rules, one module each, and `Rules`: the set configured from settings.

`Rules(settings.rules)` is the one place rules are built from settings (`Rules.of(...)`
takes the settings' fields as keywords, for tests). `judge` applies every rule to a job
that a listing showed, `missing` the presence rule to a job a complete listing did not;
`watcher.detect` calls them for every job of a cycle and stays the only caller.

A judgement has two phases. First the *judges*, each on its own: discovered, its status,
its precheck, its initialization, its delay level, a stall, an expiry; the order below
is the order in which a job's events come out. Then the *reviewers*
(`rules.base.Reviewer`), which see what the judges said about the job in this judgement
and every rule's new memory: flapping (which may hold the judges' changes back) and
reminders (which track every condition). What is said goes out through `say` only once
both phases are done.

Per-job overrides (`rules.overrides`): each builds a whole set of rules from the settings
with its values applied, and a job is judged by the set of the first override whose
matcher picks it (`for_job`), or by the default set. See docs/architecture.md for adding
a rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from watcher.kinds import Kind, Severity
from watcher.live import same_but_live, same_live
from watcher.rules.base import (
    Condition,
    JobMemory,
    Memory,
    Reviewer,
    Rule,
    Said,
    Say,
    Seen,
    watching,
)
from watcher.rules.delay import DelayRule
from watcher.rules.expiry import ExpiryRule
from watcher.rules.flap import FlapRule
from watcher.rules.init import InitRule
from watcher.rules.precheck import PrecheckRule
from watcher.rules.presence import Presence
from watcher.rules.reminder import ReminderMemory, ReminderRule
from watcher.rules.stall import StallRule
from watcher.rules.status import StatusRule
from watcher.settings import RulesSettings
from watcher.settings.alerting import Matcher
from watcher.snapshot import JobState

__all__ = [
    "Condition",
    "JobMemory",
    "Memory",
    "Rule",
    "RuleSet",
    "Rules",
    "Say",
    "decode_memory",
]

# Every rule after presence, in the order they judge a job.
JUDGES: tuple[type[Rule[Any]], ...] = (
    StatusRule,
    PrecheckRule,
    InitRule,
    DelayRule,
    StallRule,
    ExpiryRule,
)
# Then, in this order, those that review what the judges found.
REVIEWERS: tuple[type[Reviewer[Any]], ...] = (FlapRule, ReminderRule)
_ALL: tuple[type[Rule[Any]], ...] = (Presence, *JUDGES, *REVIEWERS)


class RuleSet:
    """Every rule, built from one set of settings (the defaults, or an override's)."""

    def __init__(self, settings: RulesSettings) -> None:
        self.presence = Presence.from_settings(settings)
        self.judges: tuple[Rule[Any], ...] = tuple(kind.from_settings(settings) for kind in JUDGES)
        self.reviewers: tuple[Reviewer[Any], ...] = tuple(
            cast(Reviewer[Any], kind.from_settings(settings)) for kind in REVIEWERS
        )
        self.all: tuple[Rule[Any], ...] = (self.presence, *self.judges, *self.reviewers)
        self.by_name: dict[str, Rule[Any]] = {rule.name: rule for rule in self.all}
        self.watchers = watching(self.all)  # those that can see a condition
        self.first = (self.presence, *self.judges)  # the first phase of a judgement

    def conditions(self, job: JobState, mem: JobMemory, now: datetime) -> list[Condition]:
        """What is not ok about the job now; `since` filled in from the reminder rule's
        tracking where the condition's own rule does not know it."""
        tracked = mem.parts.get(ReminderRule.name, ReminderMemory())
        found = []
        for rule in self.watchers:
            for condition in rule.conditions(job, mem.of(rule), now):
                if condition.since is None:
                    since = tracked.since(condition.name)
                    if since is not None:
                        condition = Condition(
                            condition.kind, condition.name, condition.severity, since
                        )
                found.append(condition)
        return found


class Rules:
    """The configured rules (frozen once built)."""

    def __init__(self, settings: RulesSettings | None = None) -> None:
        s = settings if settings is not None else RulesSettings()
        self.settings = s
        self.announce_existing = s.announce_existing
        self.default = RuleSet(s)
        self.presence = self.default.presence
        self.judges = self.default.judges
        self.overrides: tuple[tuple[Matcher, RuleSet], ...] = tuple(
            (override.match, RuleSet(s.applied(override))) for override in s.overrides
        )

    @classmethod
    def of(cls, **settings: Any) -> Rules:
        """Rules from the fields of `RulesSettings` (validated, defaults filled in)."""
        return cls(RulesSettings(**settings))

    def rule(self, name: str) -> Rule[Any]:
        return self.default.by_name[name]

    def for_job(self, job: JobState) -> RuleSet:
        """The rules that judge `job`: the first override that picks it, or the default."""
        for match, rules in self.overrides:
            if match.matches(job):
                return rules
        return self.default

    def conditions(self, job: JobState, mem: JobMemory, now: datetime) -> list[Condition]:
        """What is not ok about the job now (see `RuleSet.conditions`)."""
        return self.for_job(job).conditions(job, mem, now)

    def judge(self, old: JobState | None, job: JobState, mem: JobMemory, say: Say) -> JobMemory:
        """Every rule on a job a listing showed (`old`: its last known state, if any).

        A job whose live fields alone moved (its delay, at every poll on a live account)
        is judged by the rules that read them (`Rule.live_blind` false) as changed, by
        the others as unchanged, and reviewed only when that said or remembered
        something new, or a reviewer has something due: what the full judgement would
        give (a unit test holds the two equal), at a fraction of its cost.
        """
        live_only = False
        if old is None or old is job:
            unchanged = old is job
        else:
            stable = same_but_live(old, job)
            unchanged = stable and same_live(old, job)
            live_only = stable and not unchanged
        if unchanged and not mem.parts:
            return mem  # unchanged, nothing pending: the steady state costs nothing
        rules = self.for_job(job)
        if unchanged and not self._pending(rules, mem, say):
            return mem  # memory, but nothing to time or review now (a failed job, mostly)
        voice = _Voice(say)
        if old is None:
            parts = self._first_sight(rules, job, voice)
        elif unchanged:
            parts = self._unchanged(rules, job, mem, voice)
        else:
            parts = dict(mem.parts)
            for rule in rules.first:
                if live_only and rule.live_blind:
                    part = parts.get(rule.name)
                    if part is not None and rule.wants_unchanged(part):
                        self._keep(parts, rule, rule.unchanged(job, part, voice))
                else:
                    self._keep(parts, rule, rule.changed(old, job, mem.of(rule), voice))
        # A job unchanged whose judges kept their memory, or one whose live fields alone
        # moved and whose judges said nothing nor changed what is not ok about it, is
        # reviewed only when a reviewer has something due (a reminder, the end of a flap
        # or of a silence): the reviewers would find nothing else.
        if unchanged:
            quiet = parts == mem.parts
        else:
            quiet = (
                live_only
                and not voice.said
                and self._same_conditions(rules, job, mem, parts, voice.now)
            )
        seen = Seen(job, old, voice.said, parts, rules.by_name, voice, rules.watchers)
        for reviewer in rules.reviewers:
            part = parts.get(reviewer.name, reviewer.blank)
            if not quiet or reviewer.due(part, voice):
                self._keep(parts, reviewer, reviewer.review(seen, part))
        for item in seen.said:
            say(item.kind, item.data, item.severity)
        if (unchanged or live_only) and parts == mem.parts:
            return mem
        return JobMemory(parts)

    def missing(self, old: JobState, mem: JobMemory, say: Say) -> JobMemory | None:
        """A complete listing did not show the job: its memory, or None once removed."""
        presence = self.presence.missing(old, mem.of(self.presence), say)
        if presence is None:
            return None
        parts = dict(mem.parts)
        self._keep(parts, self.presence, presence)
        return JobMemory(parts)

    @staticmethod
    def _same_conditions(
        rules: RuleSet, job: JobState, mem: JobMemory, parts: dict[str, Any], now: datetime
    ) -> bool:
        """Whether the judges' new memory (`parts`) sees the job's conditions as `mem` did
        (what the reviewers look at, besides what was said)."""
        before = mem.parts
        for rule in rules.first:
            name = rule.name
            new, old = parts.get(name, rule.blank), before.get(name, rule.blank)
            if new is old or rule not in rules.watchers:
                continue
            if tuple(rule.conditions(job, new, now)) != tuple(rule.conditions(job, old, now)):
                return False
        return True

    @staticmethod
    def _pending(rules: RuleSet, mem: JobMemory, say: Say) -> bool:
        """Whether an unchanged job with memory has anything to judge now."""
        parts = mem.parts
        for rule in rules.first:
            part = parts.get(rule.name)
            if part is not None and rule.wants_unchanged(part):
                return True
        return any(
            reviewer.due(parts.get(reviewer.name, reviewer.blank), say)
            for reviewer in rules.reviewers
        )

    def _first_sight(self, rules: RuleSet, job: JobState, voice: _Voice) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        presence = rules.presence
        self._keep(parts, presence, presence.first_sight(job, presence.blank, voice))
        mute = _Voice(voice, mute=True)
        for rule in rules.judges:
            if self.announce_existing:
                found = rule.first_sight(job, rule.blank, voice)
            else:  # stay quiet, but remember what is already true
                found = rule.quietly(job, rule.blank, mute)
            self._keep(parts, rule, found)
        return parts

    def _unchanged(
        self, rules: RuleSet, job: JobState, mem: JobMemory, voice: _Voice
    ) -> dict[str, Any]:
        parts = dict(mem.parts)
        for rule in rules.first:
            part = parts.get(rule.name)
            if part is not None and rule.wants_unchanged(part):
                self._keep(parts, rule, rule.unchanged(job, part, voice))
        return parts

    @staticmethod
    def _keep(parts: dict[str, Any], rule: Rule[Any], part: Any) -> None:
        if part is parts.get(rule.name, rule.blank):
            return  # the very same memory: nothing moved (the usual case)
        if part == rule.blank:
            parts.pop(rule.name, None)
        else:
            parts[rule.name] = part


class _Voice:
    """`say` for the judges of one judgement: the same moment as the judgement's own,
    but what they say is collected (for the reviewers) rather than sent."""

    __slots__ = ("_mute", "_say", "now", "said")

    def __init__(self, say: Say, *, mute: bool = False) -> None:
        self._say = say
        self._mute = mute
        self.now = say.now
        self.said: list[Said] = []

    @property
    def silenced(self) -> str | None:
        return self._say.silenced

    def __call__(self, kind: Kind, data: dict[str, Any], severity: Severity | None = None) -> None:
        if not self._mute:
            self.said.append(Said(kind, data, severity))

    def held(self, kind: Kind) -> None:
        self._say.held(kind)


def decode_memory(data: Mapping[str, Any]) -> JobMemory:
    """A job's memory from its persisted form (`JobMemory.to_dict`)."""
    parts: dict[str, Any] = {}
    for rule in _ALL:
        part = rule.memory.from_dict(data)
        if part != rule.memory():
            parts[rule.name] = part
    return JobMemory(parts)
