"""Initialization: schema ("structure") or full-data initialization whose status became
Failed is `init_failed`, once until that stage stops failing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from watcher.kinds import INIT_FAILED
from watcher.rules.base import Rule, Say
from watcher.snapshot import InitStage, JobState

STAGES = ("structure", "data")


@dataclass(frozen=True, slots=True)
class InitMemory:
    announced: frozenset[str] = frozenset()  # stages whose failure was said

    def to_dict(self) -> dict[str, Any]:
        return {"init_announced": sorted(self.announced)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InitMemory:
        return cls(frozenset(data.get("init_announced") or ()))


class InitRule(Rule[InitMemory]):
    name = "init"
    memory = InitMemory
    live_blind = True  # judges stable fields only (see Rule.live_blind)

    def first_sight(self, job: JobState, mem: InitMemory, say: Say) -> InitMemory:
        return self.changed(job, job, mem, say)

    def quiet_first_sight(self, job: JobState, mem: InitMemory) -> InitMemory:
        return InitMemory(frozenset(s for s in STAGES if _failed(_stage(job, s))))

    def changed(self, old: JobState, job: JobState, mem: InitMemory, say: Say) -> InitMemory:
        announced = set(mem.announced)
        for name in STAGES:
            stage = _stage(job, name)
            if not _failed(stage):
                announced.discard(name)
                continue
            if name in announced:
                continue
            message = (stage.error_message if stage else None) or job.error_message
            say(INIT_FAILED, {"stage": name, "error_message": message})
            announced.add(name)
        frozen = frozenset(announced)
        return mem if frozen == mem.announced else InitMemory(frozen)


def _stage(job: JobState, name: str) -> InitStage | None:
    return job.structure_init if name == "structure" else job.data_init


def _failed(stage: InitStage | None) -> bool:
    return stage is not None and stage.failed
