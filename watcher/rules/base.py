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
    changed(old, job, mem, say)       the job's state differs from the last one seen
    unchanged(job, mem, say)          the job is as it was: called only while
                                      `wants_unchanged(mem)` (a count in progress), so the
                                      steady state costs nothing
    missing(old, mem, say)            a complete listing did not show the job (presence)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from watcher.kinds import Kind, Severity
from watcher.settings import RulesSettings
from watcher.snapshot import JobState


class Say(Protocol):
    """Say what a rule found about the job being judged: the kind, its data beyond the
    common fields, and a severity when the kind's own rule is not the right one."""

    def __call__(
        self, kind: Kind, data: dict[str, Any], severity: Severity | None = None
    ) -> None: ...


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

    def changed(self, old: JobState, job: JobState, mem: M, say: Say) -> M:
        return mem

    def wants_unchanged(self, mem: M) -> bool:
        return False

    def unchanged(self, job: JobState, mem: M, say: Say) -> M:
        return mem


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
    """The rule memory of every job, and how many cycles have been judged."""

    cycle: int = 0
    jobs: Mapping[Any, JobMemory] = field(default_factory=dict)
