"""What a rule is, and what the rules remember about a job.

A rule judges one job at a time and says what it found through `say` (an event kind and
its data; `detect` turns that into an `Event` with the common fields and a deterministic
id). It is pure: no I/O, no clock (time comes with the job's observation, from `detect`).
What it must remember between cycles is its *memory*, a small frozen dataclass whose
default instance means "nothing to remember"; `JobMemory` holds each rule's memory for one
job, and the store persists it with the job's state.

A rule has a say at these moments (each has a do-nothing default):

    first_sight(job, mem, say)        a job never seen before (`rules.announce_existing`)
    quiet_first_sight(job, mem)       the same, without announcing: remember what is
                                      already true so it is not announced as new later
                                      (`quietly(job, mem, say)` for a rule that needs
                                      `say.now` for it; what it says is dropped)
    changed(old, job, mem, say)       the job's state differs from the last one seen
    unchanged(job, mem, say)          the job is as it was: called only while
                                      `wants_unchanged(mem)` (a count in progress), so the
                                      steady state costs nothing
    missing(old, mem, say)            a complete listing did not show the job (presence)

`say.now` is when the job was observed (the cycle's time, from `detect`): rules that
judge durations (stalls, expiry) read it there and record observation times in their
memory; none reads a clock.

Two more things a rule may offer:

    conditions(job, mem, now)         what is not ok about the job right now, as this
                                      rule sees it (a failure status, a delay level, a
                                      stall...): reminders, `dts-watcher status` and the
                                      condition gauges all ask the rules this
    review(seen, mem)                 (a `Reviewer`) after every other rule judged the
                                      job: see what they said about it (`Seen`), hold
                                      some of it back, say more. Flapping and reminders
                                      cut across the other rules this way.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from watcher.kinds import Kind, Severity
from watcher.settings import RulesSettings
from watcher.snapshot import JobState


class Say(Protocol):
    """Say what a rule found about the job being judged: the kind, its data beyond the
    common fields, and a severity when the kind's own rule is not the right one.

    It knows the moment of the judgement: `now`, when the job was observed, and
    `silenced`, the silence (or `maintenance:<name>`) covering the job then, if any
    (data handed to `detect`, never looked up). `held(kind)` counts an event a rule kept
    back instead of saying it (flapping).
    """

    @property
    def now(self) -> datetime: ...

    @property
    def silenced(self) -> str | None: ...

    def __call__(
        self, kind: Kind, data: dict[str, Any], severity: Severity | None = None
    ) -> None: ...

    def held(self, kind: Kind) -> None: ...


@dataclass(frozen=True, slots=True)
class Condition:
    """Something not ok about a job right now, as one rule sees it.

    `kind` is what sort of thing it is (`status`, `delay`, `stalled`, `flapping`,
    `expiring`); `name` what is shown and reminded (a status like `Failed`, a delay
    level, `stalled`...); `since` when it began, where the rule knows (the reminder rule,
    which tracks every condition, knows for the others).
    """

    kind: str
    name: str
    severity: Severity
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Said:
    """One thing a rule said in a judgement, before it goes out."""

    kind: Kind
    data: dict[str, Any]
    severity: Severity | None = None


class RuleMemory(Protocol):
    """A rule's memory: frozen, equal to its default when there is nothing to keep."""

    def to_dict(self) -> dict[str, Any]: ...


M = TypeVar("M", bound=RuleMemory)


@dataclass(frozen=True, slots=True)
class NoMemory:
    """For rules that remember nothing."""

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoMemory:
        return cls()


class Rule(Generic[M]):
    """Base class of the rules (see the module docstring for the moments)."""

    name: ClassVar[str]
    memory: ClassVar[type[Any]]  # the memory dataclass; `memory()` is the blank one
    # True for a rule whose `changed` never reads a job's live fields (`watcher.live`:
    # delay, checkpoint, throughput), so that on a job whose live fields alone moved it
    # says and remembers what `unchanged` would (or nothing, when it does not want
    # unchanged jobs). `Rules.judge` then asks it as for an unchanged job: on a live
    # account every running job's delay moves at every poll.
    live_blind: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> Rule[M]:
        return cls()

    @functools.cached_property
    def blank(self) -> M:
        """The memory of a job this rule has nothing to remember about."""
        blank: M = self.memory()
        return blank

    def first_sight(self, job: JobState, mem: M, say: Say) -> M:
        return mem

    def quiet_first_sight(self, job: JobState, mem: M) -> M:
        return mem

    def quietly(self, job: JobState, mem: M, say: Say) -> M:
        """First sight without announcing, as `Rules` asks it: `quiet_first_sight`. A rule
        that needs the moment overrides this instead (it reads `say.now`; whatever it
        says is dropped)."""
        return self.quiet_first_sight(job, mem)

    def changed(self, old: JobState, job: JobState, mem: M, say: Say) -> M:
        return mem

    def wants_unchanged(self, mem: M) -> bool:
        return False

    def unchanged(self, job: JobState, mem: M, say: Say) -> M:
        return mem

    def conditions(self, job: JobState, mem: M, now: datetime) -> Iterable[Condition]:
        return ()


class Seen:
    """One judgement of one job, as the reviewers see it: the job (and its last known
    state; None on first sight), everything the rules said about it so far (`said`, in
    order), and every rule's memory after it judged (`part`)."""

    def __init__(
        self,
        job: JobState,
        old: JobState | None,
        said: list[Said],
        parts: Mapping[str, Any],
        rules: Mapping[str, Rule[Any]],
        voice: Say,
        watchers: tuple[Rule[Any], ...] | None = None,
    ) -> None:
        """`watchers`: the rules of `rules` that can see a condition (`watching`)."""
        self.job = job
        self.old = old
        self.said = said
        self.now = voice.now
        self._parts = parts
        self._rules = rules
        self._voice = voice
        self._watchers = watchers if watchers is not None else watching(rules.values())

    @property
    def silenced(self) -> str | None:
        return self._voice.silenced

    def say(self, kind: Kind, data: dict[str, Any], severity: Severity | None = None) -> None:
        self.said.append(Said(kind, data, severity))

    def hold(self, item: Said) -> None:
        """Keep something said back: it will not go out (and is counted)."""
        self.said.remove(item)
        self._voice.held(item.kind)

    def rule(self, name: str) -> Rule[Any]:
        return self._rules[name]

    def part(self, name: str) -> Any:
        """A rule's memory after this judgement."""
        return self._parts.get(name, self._rules[name].blank)

    def conditions(self) -> list[Condition]:
        """What is not ok about the job now, by every rule's judgement."""
        return [
            condition
            for rule in self._watchers
            for condition in rule.conditions(self.job, self.part(rule.name), self.now)
        ]


def watching(rules: Iterable[Rule[Any]]) -> tuple[Rule[Any], ...]:
    """The rules that can see a condition (those that define `conditions`)."""
    return tuple(rule for rule in rules if type(rule).conditions is not Rule.conditions)


class Reviewer(Rule[M]):
    """A rule that judges a job after the others, from what they found (`Seen`). It is
    asked on first sight, on every change, on an unchanged job whose other rules moved,
    and on an unchanged job when `due(mem, say)`; its other moments are not used."""

    def review(self, seen: Seen, mem: M) -> M:
        return mem

    def due(self, mem: M, say: Say) -> bool:
        """On an unchanged job whose other rules kept their memory: whether there is
        something to review now (`say.now`, `say.silenced`); `wants_unchanged` if not
        said otherwise."""
        return self.wants_unchanged(mem)


@dataclass(frozen=True, slots=True)
class JobMemory:
    """What the rules remember about one job: each rule's memory by rule name, blank ones
    left out (so a job with nothing to remember is `JobMemory()`, and falsy).

    Persisted as one flat JSON object, each rule owning its keys (`to_dict`);
    `watcher.rules.decode_memory` reads it back.
    """

    parts: Mapping[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def of(self, rule: Rule[M]) -> M:
        part: M = self.parts.get(rule.name, rule.blank)
        return part

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in self.parts.values():
            out.update(part.to_dict())
        return out


@dataclass(frozen=True, slots=True)
class Memory:
    """The rule memory of every job, and how many cycles have been judged: by this
    process (`cycle`) and, with several replicas, by whoever held each shard
    (`shard_cycles`, shard label -> count, kept in the shared state; empty otherwise)."""

    cycle: int = 0
    jobs: Mapping[Any, JobMemory] = field(default_factory=dict)
    shard_cycles: Mapping[str, int] = field(default_factory=dict)
